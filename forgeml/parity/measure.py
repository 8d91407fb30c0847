"""Parity: run a candidate on the same inputs as the reference and judge every output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from forgeml.records import Record
from forgeml.runtime import InputSet, Runner
from forgeml.parity.metrics import OutputAccumulator
from forgeml.parity.tolerances import Tolerance


@dataclass
class ParityRow(Record):
    """One output's metrics in one stage (``parity/metrics.py`` computes them; docs/design.md lists them).
    A metric the output does not have (top-1 on a regression, cosine on labels) is None and not written."""

    output: str | None = None
    passed: bool | None = None
    problem: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    mean_abs: float | None = None
    cosine: float | None = None
    centered_cosine: float | None = None
    top1: float | None = None
    top1_decided_fraction: float | None = None
    top1_decided: int | None = None
    top1_noise: float | None = None
    top1_margin: float | None = None
    top1_judged: str | None = None
    warning: str | None = None
    exact_match: float | None = None
    atol_needed: float | None = None
    tokens_matched: str | None = None  # generation rows (parity/generation.py): "matched/total" greedy tokens
    first_divergence: str | None = None
    generation: dict[str, Any] | None = None  # runtime, tokens, prompts, matched, total, divergences
    verdict: str | None = None  # "undecided": a cosine failure the weight type's own noise explains (parity/floor.py)
    noise_floor: float | None = None  # RMS logit error of the source framework on the file's rounded weights

    def metric(self, name: str) -> float | None:
        """A metric by its column name (``parity.table.COLUMNS``)."""
        return getattr(self, name)


@dataclass
class StageParity:
    """One stage's verdict: a row of metrics per output, judged against one tolerance profile."""

    passed: bool
    reference: str
    profile: Tolerance
    rows: list[ParityRow]
    batches: int
    sketches: dict[str, dict] = field(default_factory=dict)  # output → error histogram + value sample

    def to_json(self) -> dict:
        out = {"passed": self.passed, "reference": self.reference, "profile": self.profile.name,
               "tolerance": self.profile.to_json(), "batches": self.batches,
               "rows": [r.to_json() for r in self.rows]}
        if self.sketches:
            out["sketches"] = self.sketches
        return out

    def failing_outputs(self) -> list[str]:
        return [r.output for r in self.rows if not r.passed]


def run_reference(runner: Runner, input_sets: Sequence[InputSet], what: str,
                  progress: Callable[[int, int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """The reference's outputs on every input set. A failure there is the user's input not fitting
    the model (``InputError``, one line naming ``what``), not a parity verdict."""
    from forgeml.errors import ForgeError, InputError, first_line

    try:
        many = getattr(runner, "run_many", None)  # a runner that does better with every set at once
        if many is not None:
            out = many(list(input_sets))
            if progress is not None:
                progress(len(out), len(input_sets))
            return out
        out = []
        for s in input_sets:
            out.append(runner(s))
            if progress is not None:
                progress(len(out), len(input_sets))
        return out
    except ForgeError:
        raise
    except Exception as e:
        raise InputError(f"{what} failed on the inputs: {first_line(e, with_type=True)}") from e


def measure(reference_outputs: Sequence[dict[str, np.ndarray]], candidate: Runner,
            input_sets: Sequence[InputSet], tol: Tolerance, *, reference: str,
            output_names: Sequence[str], progress: Callable[[int, int], None] | None = None) -> StageParity:
    """Compare ``candidate`` on ``input_sets`` with the precomputed reference outputs; ``progress``
    hears (batches done, total) after each batch (a big model's parity takes minutes).

    Outputs are matched by the source model's names; a missing or extra output fails its row.
    """
    from forgeml.parity.sketch import SAMPLE, ErrorSketch

    accs = {n: OutputAccumulator(n) for n in output_names}
    sketches = {n: ErrorSketch() for n in output_names}
    per_batch = max(1, SAMPLE // max(len(input_sets), 1))
    for i, (inputs, ref) in enumerate(zip(input_sets, reference_outputs, strict=True)):
        got = candidate(inputs)
        for name in output_names:
            if name not in got:
                accs[name].problems.append(f"candidate has no output named {name!r} (it has {sorted(got)})")
                continue
            accs[name].add(ref[name], got[name], tol.rtol)
            sketches[name].add(np.asarray(ref[name]), np.asarray(got[name]), per_batch)
        if progress is not None:
            progress(i + 1, len(input_sets))
    rows = [ParityRow.from_json(accs[n].row(tol)) for n in output_names]
    drawn = {n: j for n, s in sketches.items() if (j := s.to_json()) is not None}
    return StageParity(passed=all(r.passed for r in rows), reference=reference, profile=tol,
                       rows=rows, batches=len(input_sets), sketches=drawn)


@dataclass
class ParityReport:
    """Parity of every stage of one run, in order. ``table()`` is what a person reads."""

    stages: list[tuple[str, StageParity]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(p.passed for _, p in self.stages)

    def add(self, stage: str, parity: StageParity) -> None:
        self.stages.append((stage, parity))


    def table(self) -> str:
        from forgeml.parity.table import parity_table

        return parity_table(self.stages)
