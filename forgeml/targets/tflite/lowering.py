"""ONNX → tf_keras with further tries where onnx2tf fails or builds a model that computes otherwise.

onnx2tf guesses every tensor's layout to make a channel-first graph channel-last; some graphs defeat
the guess. Each try's Keras model is checked against onnxruntime on the run's example inputs
(``Lowered.mismatch``), and the tries go on until one agrees:

1. the graph as it is (the inputs made channel-last unless ``keep_layout``);
2. the graph rewritten by the ``rewrites.py`` passes that match it (exact rewrites into ops whose
   layout onnx2tf tracks), when any does;
3. with every input kept in its source layout (onnx2tf then transposes inside the model), when the
   inputs were made channel-last: a lower-rank input broadcast against an image, say, which onnx2tf
   would transpose as if it were one. The runner feeds inputs through the io map either way.

When none agrees, the try closest to onnxruntime goes on (parity then reports the disagreement with
the source framework, as for any route); when all fail, the first failure is raised, naming the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from forgeml.errors import TargetError
from forgeml.runtime import InputSet
from forgeml.targets.tflite.onnx2tf import Lowered, to_keras

log = logging.getLogger(__name__)

AGREES = 1e-3  # worst output's max abs error / its max abs value: fp32 onnx2tf models sit near 1e-6


@dataclass
class Lowering:
    lowered: Lowered
    rewrites: dict[str, int] = field(default_factory=dict)  # rewrite name → nodes rewritten
    kept_layout: bool = False  # inputs kept in their source layout by the third try

    @property
    def how(self) -> str:
        """For the manifest's route: what was done to the graph before onnx2tf, or ""."""
        bits = [f"ONNX rewritten ({', '.join(self.rewrites)})"] if self.rewrites else []
        if self.kept_layout:
            bits.append("inputs kept in the source layout")
        return "; ".join(bits)


def lower(proto, samples: Sequence[InputSet], scratch: Path, *, keep_layout: bool,
          layers: dict[str, str] | None = None) -> Lowering:
    from forgeml.targets.tflite.rewrites import rewrite

    rewritten, done = rewrite(proto)
    tries = [("as is", proto, {}, keep_layout)]
    if done:
        tries.append(("rewritten", rewritten, done, keep_layout))
    if not keep_layout:
        tries.append(("inputs kept", rewritten if done else proto, done, True))
    best: Lowering | None = None
    errors: list[tuple[str, TargetError]] = []
    for i, (what, graph, rewrites, keep) in enumerate(tries):
        try:
            got = to_keras(graph, samples, scratch / f"try{i}", keep_layout=keep, layers=layers)
        except TargetError as e:
            errors.append((what, e))
            log.info("onnx2tf, graph %s: %s", what, e)
            continue
        candidate = Lowering(got, rewrites, keep and not keep_layout)
        if best is None or got.mismatch < best.lowered.mismatch:
            best = candidate
        if got.mismatch <= AGREES:
            return candidate
        log.info("onnx2tf, graph %s: its model is %.3g away from onnxruntime", what, got.mismatch)
    if best is not None:
        return best
    first = errors[0][1]
    if len(errors) == 1:
        raise first
    rest = "; ".join(f"{w}: {str(e).removeprefix('tflite: ')}" for w, e in errors[1:])
    raise TargetError(f"{first} (tried again — {rest})"[:1500]) from first
