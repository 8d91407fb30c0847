"""Generation parity's decode loop and verdicts, on a small numpy decoder with a real KV cache.

The decoder's cached forward (what an exported graph computes) is decoded by ``runner_decode``; the
reference recomputes the whole prefix every step without a cache, as a source framework may. A
runner that mishandles positions must be caught at the step and position where tokens first differ.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from forgeml.ir import DecoderSpec
from forgeml.parity.generation import (GenerationCheck, compare, first_divergence, generate, prompts_from,
                                       runner_decode)
from forgeml.parity.measure import StageParity
from forgeml.parity.tolerances import PROFILES

V, D = 24, 8
_rng = np.random.default_rng(7)
EMB = _rng.normal(size=(V, D)) * 2.0
OUT = _rng.normal(size=(D, V)) * 2.0


def _forward(ids, positions, past_k, past_v):
    """One attention-like layer: keys depend on position; each new token reads the mean of all keys so far."""
    new_k = EMB[ids] * np.cos(0.7 * positions)[..., None]
    keys = np.concatenate([past_k, new_k[:, None]], axis=2)
    values = np.concatenate([past_v, EMB[ids][:, None]], axis=2)
    past = past_k.shape[2]
    h = np.stack([3.0 * keys[:, 0, :past + i + 1].mean(axis=1) + values[:, 0, past + i]
                  for i in range(ids.shape[1])], axis=1)
    return (h @ OUT).astype(np.float32), keys.astype(np.float32), values.astype(np.float32)


def cached_runner(feeds):
    assert feeds["attention_mask"].shape[1] == feeds["past_key_values.0.key"].shape[2] + feeds["input_ids"].shape[1]
    logits, k, v = _forward(feeds["input_ids"], feeds["position_ids"], feeds["past_key_values.0.key"],
                            feeds["past_key_values.0.value"])
    return {"logits": logits, "present.0.key": k, "present.0.value": v}


def positions_from_zero(feeds):
    """A broken export: ignores position_ids and counts every call's tokens from 0."""
    return cached_runner({**feeds, "position_ids": np.arange(feeds["input_ids"].shape[1])[None]})


def recompute(prompt, n, eos=None):
    """The reference: no cache, the whole sequence through the model at every step."""
    seq, tokens, steps = list(prompt), [], []
    for _ in range(n):
        empty = np.zeros((1, 1, 0, D))
        logits, _, _ = _forward(np.asarray([seq]), np.arange(len(seq))[None], empty, empty)
        steps.append(logits[0, -1])
        tokens.append(int(logits[0, -1].argmax()))
        seq.append(tokens[-1])
        if tokens[-1] == eos:
            break
    return tokens, np.stack(steps)


def _spec(eos=None) -> DecoderSpec:
    return DecoderSpec("toy", 1, 1, 1, D, D, V, 256, None, eos, None,
                       generate=lambda p, n: recompute(p, n, eos),
                       prompts=prompts_from(np.arange(40).reshape(2, 20) % V))


def test_cached_decoding_matches_the_uncached_reference():
    spec = _spec()
    check = GenerationCheck.start(spec, 12)
    assert [len(p) for p in check.prompts] == [4, 9, 14, 19]
    row = check.row(runner_decode(cached_runner, spec), PROFILES["fp32"], "toy")
    assert row.passed, row
    assert row.tokens_matched == "48/48" and row.exact_match == 1.0
    assert row.generation["divergences"] == [] and row.max_abs < 1e-4


def test_a_position_bug_is_reported_at_its_first_step_and_position():
    spec = _spec()
    ref = generate(spec.generate, spec.prompts, 12)
    bad = generate(runner_decode(positions_from_zero, spec), spec.prompts, 12)
    row = compare(ref, bad, spec.prompts, PROFILES["fp32"], runtime="toy", n=12)
    assert not row["passed"]
    first = row["generation"]["divergences"][0]
    p = spec.prompts[first["prompt"]]
    expected = first_divergence(ref.tokens[first["prompt"]], bad.tokens[first["prompt"]])
    assert first["step"] == expected and first["position"] == len(p) + expected >= len(p)
    assert first["reference"] == ref.tokens[first["prompt"]][expected] != first["candidate"]
    assert f"prompt {first['prompt']} step {expected} (position {first['position']})" in row["problem"]
    matched, total = map(int, row["tokens_matched"].split("/"))
    assert matched < total == 48


def test_lower_precision_reports_divergence_without_failing_on_tokens_alone():
    spec = _spec()
    ref = generate(spec.generate, spec.prompts, 12)
    # The same continuation with one token swapped at the last step: logits equal up to there.
    cand = dataclasses.replace(ref, tokens=[t[:-1] + [(t[-1] + 1) % V] for t in ref.tokens])
    loose = compare(ref, cand, spec.prompts, PROFILES["int4"], runtime="toy", n=12)
    strict = compare(ref, cand, spec.prompts, PROFILES["fp32"], runtime="toy", n=12)
    assert loose["passed"] and "first_divergence" in loose and not strict["passed"]
    assert loose["tokens_matched"] == "44/48"


def test_decoding_stops_at_eos_like_generate():
    first = recompute(list(_spec().prompts[0]), 1)[0][0]
    spec = _spec(eos=first)
    check = GenerationCheck.start(spec, 12)
    assert check.reference.tokens[0] == [first]
    row = check.row(runner_decode(cached_runner, spec), PROFILES["fp32"], "toy")
    assert row.passed, row


def test_a_runner_that_cannot_decode_fails_its_row_in_one_line():
    spec = _spec()
    check = GenerationCheck.start(spec, 4)

    def broken(feeds):
        raise RuntimeError("no kernel for Attention\nstack...")

    parity = StageParity(True, "ref", PROFILES["fp32"], rows=[], batches=1)
    judged = check.judge(parity, broken, PROFILES["fp32"], runtime="toy")
    assert not judged.passed
    assert judged.rows[-1].problem == "greedy decoding failed: RuntimeError: no kernel for Attention"


def toy_onnx():
    """The same decoder as an ONNX graph with genai's names: what an exported decoder looks like."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("past_key_values.0.key", f, ["batch", 1, "past", D]),
              helper.make_tensor_value_info("past_key_values.0.value", f, ["batch", 1, "past", D])]
    outputs = [helper.make_tensor_value_info("logits", f, ["batch", "seq", V]),
               helper.make_tensor_value_info("present.0.key", f, ["batch", 1, "total", D]),
               helper.make_tensor_value_info("present.0.value", f, ["batch", 1, "total", D])]
    consts = {"emb": EMB.astype(np.float32), "out": OUT.astype(np.float32), "freq": np.float32(0.7),
              "three": np.float32(3.0), "one": np.float32(1.0), "ax1": np.array([1], np.int64),
              "ax2": np.int64(2), "ax_last": np.array([-1], np.int64), "zero": np.array([0], np.int64),
              "big": np.array([2**62], np.int64), "two": np.array([2], np.int64)}
    n = helper.make_node
    nodes = [
        n("Gather", ["emb", "input_ids"], ["e"]),  # (b, s, D)
        n("Cast", ["position_ids"], ["pf"], to=f), n("Mul", ["pf", "freq"], ["pa"]), n("Cos", ["pa"], ["pc"]),
        n("Unsqueeze", ["pc", "ax_last"], ["pcu"]), n("Mul", ["e", "pcu"], ["nk"]),
        n("Unsqueeze", ["nk", "ax1"], ["nk4"]), n("Unsqueeze", ["e", "ax1"], ["nv4"]),
        n("Concat", ["past_key_values.0.key", "nk4"], ["present.0.key"], axis=2),
        n("Concat", ["past_key_values.0.value", "nv4"], ["present.0.value"], axis=2),
        # the mean of the keys up to each position: running sum / count
        n("CumSum", ["present.0.key", "ax2"], ["cs"]),
        n("Shape", ["present.0.key"], ["shp"]), n("Gather", ["shp", "ax2"], ["t"]),
        n("Cast", ["t"], ["tf0"], to=f), n("Add", ["tf0", "one"], ["tf"]),
        n("Range", ["one", "tf", "one"], ["cnt"]), n("Unsqueeze", ["cnt", "ax_last"], ["cnt2"]),
        n("Div", ["cs", "cnt2"], ["mean"]),
        # the new tokens' rows: the last `seq` positions
        n("Shape", ["input_ids"], ["ishp"]), n("Gather", ["ishp", "ax1"], ["s1"]), n("Neg", ["s1"], ["ns"]),
        n("Slice", ["mean", "ns", "big", "two"], ["mean_new"]),
        n("Slice", ["present.0.value", "ns", "big", "two"], ["val_new"]),
        n("Squeeze", ["mean_new", "ax1"], ["m3"]), n("Squeeze", ["val_new", "ax1"], ["v3"]),
        n("Mul", ["m3", "three"], ["m3x"]), n("Add", ["m3x", "v3"], ["h"]),
        n("MatMul", ["h", "out"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "toy", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_genai_config_runs_in_onnxruntime_genai_like_the_reference(tmp_path):
    """genai_config.json as the onnx target writes it: genai's own Generator decodes the graph, and it
    and onnxruntime (through runner_decode) give the uncached reference's tokens."""
    import onnx
    import pytest

    from forgeml.runtime.ort import ort_runner
    from forgeml.targets.onnx.genai import write_genai_files

    pytest.importorskip("onnxruntime_genai")
    from forgeml.runtime.genai import genai_decode

    onnx.save(toy_onnx(), tmp_path / "model.onnx")
    spec = dataclasses.replace(_spec(), model_type="llama", bos_token_id=1, eos_token_id=V - 1)
    written = write_genai_files(spec, tmp_path, "model.onnx")
    assert [p.name for p in written] == ["genai_config.json"]  # no tokenizer dir: the config alone
    check = GenerationCheck.start(dataclasses.replace(spec, generate=lambda p, n: recompute(p, n, V - 1)), 10)
    for runtime, decode in (("onnxruntime", runner_decode(ort_runner(tmp_path / "model.onnx"), spec)),
                            ("onnxruntime-genai", genai_decode(tmp_path))):
        row = check.row(decode, PROFILES["fp32"], runtime)
        assert row.passed, (row.problem, row.tokens_matched)
        assert row.generation["divergences"] == [] and row.max_abs < 1e-4


def test_no_top1_on_a_kv_cache_output():
    """A cache tensor's last axis is head_dim: top-1 over it is meaningless, so it is not measured."""
    from forgeml.parity.metrics import OutputAccumulator

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 2, 5, 8)).astype(np.float32)
    for name, has_top1 in (("present.0.key", False), ("logits", True)):
        acc = OutputAccumulator(name)
        acc.add(ref, ref + 1e-3, 1e-3)
        assert ("top1" in acc.row(PROFILES["int4"])) is has_top1, name
