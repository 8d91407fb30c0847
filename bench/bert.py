"""BERT-base int8 side by side: onnxruntime fp32, plain ``quantize_dynamic``, forgeml's int8 variants and
Optimum's CPU recipe, on one machine in one interleaved run.

The model is ``BertForSequenceClassification`` from a bert-base config with random weights (seed 0).
Such a model's logits barely depend on its input, so plain cosine is ≥ 0.998 for any int8 and says
nothing; accuracy is the **centered cosine** vs torch: each logit minus its mean over the 32 inputs,
then the cosine of what is left (the input-dependent part). Latency is the median of batch-1 runs at
each sequence length, the variants alternated run by run (noise from the shared machine hits them
alike), as a ratio to onnxruntime fp32 on the plain export (< 1 = faster). File is the size ratio.

Optimum (``optimum-onnx``) pins transformers<4.58 and cannot live in forgeml's venv: it runs in its own
(``bench/optimum-venv.sh`` makes it; ``--optimum make`` calls it) as a subprocess that exports the same
checkpoint with Optimum's exporter, applies its O2 preset and dynamic int8 with its AVX2 and AVX-512
VNNI presets, and hands back the files; they are timed here, interleaved with the rest, on the same
inputs. Without the venv (``--optimum auto``) those rows are skipped and the table says so.

    python bench/bert.py             # full table (takes /work/tools/big.lock while timing)
    python bench/bert.py --optimum make --repeats 30 --seqs 128,32
    python bench/bert.py --variants fp32,forgeml-int8 --layers 2          # a quick look
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from forgeml.runtime.machine import print_machine  # noqa: E402

HERE = Path(__file__).resolve().parent
OPTIMUM_VENV = Path(os.environ.get("FORGEML_OPTIMUM_VENV", Path.home() / ".cache/forgeml/optimum-venv"))
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Variant:
    name: str
    path: Path | None = None  # the .onnx (None: torch eager)
    error: str = ""
    note: str = ""
    ms: dict[int, float] = field(default_factory=dict)
    centered: dict[int, float] = field(default_factory=dict)
    cosine: dict[int, float] = field(default_factory=dict)


# --- the model and its inputs -------------------------------------------------------------------

def build_model(layers: int):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(num_hidden_layers=layers, num_labels=2)  # bert-base otherwise
    return transformers.BertForSequenceClassification(config).eval()


def make_inputs(seq: int, n: int, seed: int, vocab: int) -> list[dict[str, np.ndarray]]:
    """Batch-1 inputs: token ids drawn like text — word ranks from a Zipf law (exponent 1.1, as in
    running text), each rank a fixed vocabulary id past BERT's special tokens — between [CLS] and [SEP]."""
    rng = np.random.default_rng(seed)
    ranked = np.random.default_rng(0).permutation(np.arange(999, vocab))  # rank → id, the same for every set
    out = []
    for _ in range(n):
        ids = ranked[np.minimum(rng.zipf(1.1, size=seq), len(ranked)) - 1]
        ids[0], ids[-1] = 101, 102
        out.append({"input_ids": ids[None].astype(np.int64), "attention_mask": np.ones((1, seq), np.int64),
                    "token_type_ids": np.zeros((1, seq), np.int64)})
    return out


def centered_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a = ref - ref.mean(axis=0, keepdims=True)
    b = got - got.mean(axis=0, keepdims=True)
    return float((a * b).sum() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def file_bytes(path: Path) -> int:
    """The model and its external data."""
    import onnx

    total = path.stat().st_size
    m = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"}
    return total + sum((path.parent / loc).stat().st_size for loc in locations)


# --- variants -----------------------------------------------------------------------------------

def export_plain(model, example: dict, out: Path) -> Path:
    """The plain dynamo export, batch and sequence dynamic: the baseline every ratio is taken to."""
    import torch

    feed = {k: torch.from_numpy(np.repeat(v, 2, axis=0)) for k, v in example.items()}  # batch 2: batch stays dynamic
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("seq", min=2, max=512)
    shapes = {k: {0: batch, 1: seq} for k in INPUT_NAMES}
    prog = torch.onnx.export(model, (), kwargs=feed, dynamo=True, dynamic_shapes=shapes, input_names=list(INPUT_NAMES),
                             output_names=["logits"], external_data=False, verbose=False)
    prog.save(str(out), external_data=False)
    return out


def plain_quantize_dynamic(fp32: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def forgeml_variant(fp32: Path, example: dict, out: Path, *, mode: str, passes=None, calibration=(),
                    **quant) -> tuple[Path, str]:
    """forgeml.convert on the plain export: its passes, budget and fallback, exactly as a user gets them.
    ``example`` is a batch of 8, so its budget can judge the centered cosine (over the batch)."""
    import forgeml

    q = forgeml.QuantizeOptions(mode, calibration=tuple(calibration), **quant)
    result = forgeml.convert(str(fp32), example, targets=["onnx"], out_dir=out, passes=passes, quantize=q,
                             parity=forgeml.ParityOptions(batches=2, localize="never"), force=True)
    stages = result.manifest.get("stages", [])
    kept = [len(s.get("details", {}).get("kept_in_float", []) or []) for s in stages if isinstance(s, dict)]
    fused = {}
    for s in stages:
        if isinstance(s, dict):
            fused.update((s.get("details") or {}).get("fusions", {}) or {})
    note = f"kept {sum(kept)} in float" + (f"; fusions {fused}" if fused else "")
    return Path(result.artifacts["onnx"].path), note


def matmul_nbits_int8(fp32: Path, out: Path, block: int = 32) -> Path:
    """Not a forgeml mode: onnxruntime's MatMulNBits with 8-bit weights and accuracy_level 4, whose MLAS
    kernels quantize the activations to int8 per block of ``block`` along K (not per tensor) — measured
    here as the accuracy lever it is (and for what it costs at M = seq rows)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=8, block_size=block, is_symmetric=True, accuracy_level=4,
                             op_types_to_quantize=("MatMul",))
    q.process()
    onnx.save_model(q.model.model, str(out))
    return out


OPT = ["check", "cleanup", "optimize"]
FORGEML_VARIANTS = {
    # name: (convert keyword arguments, whether it needs calibration)
    "forgeml int8": (dict(mode="int8"), False),
    "forgeml int8 + optimize": (dict(mode="int8", passes=OPT), False),
    # The budget is judged on the caller's data first (`quantize.calibration`), so it is given here too.
    "forgeml int8 + optimize, centered budget 0.99": (dict(mode="int8", passes=OPT, min_centered_cosine=0.99), True),
    "forgeml int8-static (calibrated, percentile)": (dict(mode="int8-static", calibrate_method="percentile"), True),
}


def optimum_files(model, workdir: Path, policy: str) -> tuple[dict[str, Path], str]:
    """Optimum's files from its own venv, or why there are none."""
    if policy == "off":
        return {}, "Optimum skipped (--optimum off)"
    python = OPTIMUM_VENV / "bin" / "python"
    if policy == "make":
        r = subprocess.run(["bash", str(HERE / "optimum-venv.sh")], env={**os.environ, "PYTHON": sys.executable},
                           capture_output=True, text=True)
        if r.returncode:
            return {}, f"Optimum venv could not be made: {r.stderr.strip().splitlines()[-1:]}"
        python = Path(r.stdout.strip().splitlines()[-1])
    if not python.exists():
        return {}, f"Optimum not measured: no venv at {OPTIMUM_VENV} (bench/optimum-venv.sh, or --optimum make)"
    ckpt = workdir / "checkpoint"
    model.save_pretrained(ckpt)
    r = subprocess.run([str(python), str(HERE / "optimum_worker.py"), str(ckpt), str(workdir / "optimum")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if r.returncode:
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        return {}, f"Optimum's recipe failed: {tail}"
    files = json.loads(r.stdout.strip().splitlines()[-1])
    return {f"Optimum {k}": Path(v) for k, v in files.items() if k.startswith("O2 +")}, ""


# --- measuring ----------------------------------------------------------------------------------

def session(path: Path, threads: int):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle spinners steal the next run's cores
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def measure(variants: list[Variant], model, inputs: dict[int, list], repeats: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    runners = {}
    for v in variants:
        if v.error:
            continue
        if v.path is None:
            runners[v.name] = lambda feed: model(**{k: torch.from_numpy(x) for k, x in feed.items()}).logits.numpy()
            continue
        s = session(v.path, threads)
        names = {i.name for i in s.get_inputs()}
        runners[v.name] = (lambda feed, s=s, names=names: s.run(None, {k: x for k, x in feed.items() if k in names})[0])
    with torch.no_grad():
        for seq, sets in inputs.items():
            ref = np.concatenate([runners["torch eager"](f) for f in sets])
            for v in variants:
                if v.name in runners and v.path is not None:
                    got = np.concatenate([runners[v.name](f) for f in sets])
                    v.centered[seq], v.cosine[seq] = centered_cosine(ref, got), cosine(ref, got)
            times: dict[str, list[float]] = {k: [] for k in runners}
            for fn in runners.values():  # warm-up
                fn(sets[0])
            for i in range(repeats):  # alternate the variants run by run
                feed = sets[i % len(sets)]
                order = list(runners.items())
                if i % 2:
                    order.reverse()
                for name, fn in order:
                    t = time.perf_counter()
                    fn(feed)
                    times[name].append(time.perf_counter() - t)
            for v in variants:
                if v.name in times:
                    v.ms[seq] = float(np.median(times[v.name])) * 1e3


def _locked(path: Path):
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def hold():
        if not path.exists():
            yield
            return
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return hold()


def table(variants: list[Variant], seqs: list[int], fp32_bytes: int) -> str:
    base = next(v for v in variants if v.name == "onnxruntime fp32")
    head = " | ".join(f"seq {s}" for s in seqs)
    lines = [f"| variant | {head} | centered cos {' / '.join(map(str, seqs))} | cos {' / '.join(map(str, seqs))} "
             f"| file | ms at seq {seqs[0]} | note |", "|---" * (len(seqs) + 6) + "|"]
    for v in variants:
        if v.error:
            lines.append(f"| {v.name} | " + " | ".join("–" for _ in seqs) + f" | – | – | – | – | {v.error} |")
            continue
        ratios = " | ".join(f"{v.ms[s] / base.ms[s]:.2f}x" for s in seqs)
        cen = " / ".join(f"{v.centered[s]:.4f}" for s in seqs) if v.centered else "–"
        cos = " / ".join(f"{v.cosine[s]:.5f}" for s in seqs) if v.cosine else "–"
        size = f"{file_bytes(v.path) / fp32_bytes:.2f}x" if v.path else "–"
        lines.append(f"| {v.name} | {ratios} | {cen} | {cos} | {size} | {v.ms[seqs[0]]:.1f} | {v.note} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqs", default="128,32")
    ap.add_argument("--samples", type=int, default=32, help="inputs per sequence length for accuracy")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per variant and sequence length")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12, help="encoder layers (12 = bert-base)")
    ap.add_argument("--optimum", choices=("auto", "make", "off"), default="auto",
                    help="auto: use the Optimum venv when it exists; make: create it first (bench/optimum-venv.sh)")
    ap.add_argument("--variants", default="",
                    help="comma-separated name prefixes to run, a trailing $ for an exact name (default: all)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    ap.add_argument("--lock", type=Path, default=Path("/work/tools/big.lock"),
                    help="flock this file while timing (skipped when it does not exist)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    print_machine()
    seqs = [int(s) for s in args.seqs.split(",")]
    wanted = [w.strip() for w in args.variants.split(",") if w.strip()]

    def want(name: str) -> bool:
        return name in ("torch eager", "onnxruntime fp32") or not wanted or any(
            name == w[:-1] if w.endswith("$") else name.startswith(w) for w in wanted)

    tmp = tempfile.TemporaryDirectory(prefix="forgeml-bench-bert-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = build_model(args.layers)
    vocab = model.config.vocab_size
    evals = {s: make_inputs(s, args.samples, 1000 + s, vocab) for s in seqs}

    def batch_of(sets):
        return {k: np.concatenate([s[k] for s in sets]) for k in INPUT_NAMES}

    calibration = [batch_of(make_inputs(seqs[0], 8, 5000 + i, vocab)) for i in range(16)]
    example = batch_of(make_inputs(seqs[0], 8, 77, vocab))
    fp32 = export_plain(model, evals[seqs[0]][0], work / "fp32.onnx")
    variants = [Variant("torch eager"), Variant("onnxruntime fp32", fp32)]

    def add(name: str, make) -> None:
        if not want(name):
            return
        try:
            made = make()
            path, note = made if isinstance(made, tuple) else (made, "")
            variants.append(Variant(name, Path(path), note=note))
        except Exception as e:  # a failed variant is a row, not the end of the run
            variants.append(Variant(name, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
        print(f"# built {name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    add("plain quantize_dynamic", lambda: plain_quantize_dynamic(fp32, work / "qd.onnx"))
    add("onnxruntime MatMulNBits 8-bit, acc 4 (per-block int8 activations, block 32)",
        lambda: matmul_nbits_int8(fp32, work / "nbits8.onnx"))
    for i, (name, (kw, needs_calib)) in enumerate(FORGEML_VARIANTS.items()):
        add(name, lambda kw=kw, needs_calib=needs_calib, i=i: forgeml_variant(
            fp32, example, work / f"forgeml-{i}", calibration=calibration if needs_calib else (), **kw))
    optimum_note = ""
    if not wanted or any("optimum".startswith(w.lower()) for w in wanted):
        files, optimum_note = optimum_files(model, work, args.optimum)
        variants += [Variant(k, p) for k, p in files.items()]
    print(f"# built every variant in {time.perf_counter() - t0:.0f} s; measuring", file=sys.stderr)
    with _locked(args.lock):  # only the timing needs the machine to itself
        measure(variants, model, evals, args.repeats, args.threads)
    from forgeml.runtime.machine import detect

    header = (f"`python bench/bert.py --layers {args.layers} --repeats {args.repeats}`: BertForSequenceClassification, "
              f"bert-base config ({args.layers} layers), random weights (seed 0); batch 1, {args.threads} threads, "
              f"{args.repeats} interleaved runs per variant; latency as a ratio to onnxruntime fp32 of the plain "
              f"export; centered cosine vs torch over {args.samples} inputs per seq.")
    markdown = table(variants, seqs, file_bytes(fp32)) + (f"\n\n{optimum_note}" if optimum_note else "")
    print(header)
    print(markdown)
    if args.json:  # bench/tables.py splices this into the README
        args.json.write_text(json.dumps({
            "machine": detect().line(), "header": header, "markdown": markdown,
            "rows": [{"name": v.name, "ms": v.ms, "centered": v.centered, "cosine": v.cosine, "error": v.error,
                      "note": v.note, "file_ratio": (file_bytes(v.path) / file_bytes(fp32)) if v.path else None}
                     for v in variants]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
