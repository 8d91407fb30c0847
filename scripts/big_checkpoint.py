"""A float16 llama-shape checkpoint larger than RAM, converted to GGUF with every check on.

Slow and out of CI (tens of minutes, ~30 GB of disk for the checkpoint plus ~16 GB for the q8_0
file); one command:

    PYTHONPATH=. flock /work/tools/big.lock python scripts/big_checkpoint.py [--gb 30] [--dir DIR] [--keep]

The checkpoint is written shard by shard (seeded random weights, N(0, 0.02), one shard of at most
``--shard-gb`` in memory at a time, never the model), with ``model.safetensors.index.json`` and a
SentencePiece tokenizer. Then ``forgeml convert DIR --to gguf --gguf-type q8_0`` runs as its own
process, measured from outside (GNU ``time -v``: wall time and peak RSS): the per-tensor check runs
inside the streaming write and the transformers reference streams each module's weights from the
shards (``forgeml.converters.hf_stream``), so neither holds the model. Both directories are deleted
at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def shape_for(gb: float) -> dict:
    """Llama-like dims (hidden 5120, ffn 13824, 40 heads, 8 KV heads) with as many layers as ``gb`` holds."""
    hidden, ffn, vocab, kv = 5120, 13824, 32000, 1024
    per_layer = 2 * (2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * ffn + 2 * hidden)
    layers = max(1, int((gb * 1e9 - 2 * 2 * vocab * hidden) // per_layer))
    return dict(hidden=hidden, ffn=ffn, vocab=vocab, heads=40, kv_heads=8, layers=layers)


def tensors(dims: dict):
    """(name, shape) in file order; norms are ones, everything else seeded N(0, 0.02)."""
    h, f, v, hd = dims["hidden"], dims["ffn"], dims["vocab"], dims["hidden"] // dims["heads"]
    kv = dims["kv_heads"] * hd
    yield "model.embed_tokens.weight", (v, h)
    for i in range(dims["layers"]):
        p = f"model.layers.{i}."
        for name, shape in (("input_layernorm.weight", (h,)), ("self_attn.q_proj.weight", (h, h)),
                            ("self_attn.k_proj.weight", (kv, h)), ("self_attn.v_proj.weight", (kv, h)),
                            ("self_attn.o_proj.weight", (h, h)), ("post_attention_layernorm.weight", (h,)),
                            ("mlp.gate_proj.weight", (f, h)), ("mlp.up_proj.weight", (f, h)),
                            ("mlp.down_proj.weight", (h, f))):
            yield p + name, shape
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (v, h)


def build(out: Path, dims: dict, shard_bytes: int, seed: int = 0) -> int:
    from safetensors.numpy import save_file

    from models_zoo.hf_models import corpus, write_sentencepiece_tokenizer

    out.mkdir(parents=True)
    write_sentencepiece_tokenizer(out, 512, corpus())
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dims["hidden"],
           "num_hidden_layers": dims["layers"], "num_attention_heads": dims["heads"],
           "num_key_value_heads": dims["kv_heads"], "intermediate_size": dims["ffn"], "vocab_size": dims["vocab"],
           "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "hidden_act": "silu",
           "head_dim": dims["hidden"] // dims["heads"], "tie_word_embeddings": False,
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "bos_token_id": 1,
           "eos_token_id": 2, "dtype": "float16"}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    shards: list[list[tuple[str, tuple]]] = [[]]
    size = 0
    for name, shape in tensors(dims):
        n = int(np.prod(shape)) * 2
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        data = {}
        for name, shape in shard:
            if len(shape) == 1:
                data[name] = np.ones(shape, np.float16)
            else:
                rng = np.random.default_rng([seed, len(weight_map)])
                t = np.empty(shape, np.float16)
                for r in range(0, shape[0], 1024):  # float32 scratch of 1024 rows, not of the tensor
                    t[r:r + 1024] = rng.standard_normal((min(1024, shape[0] - r), shape[1]), np.float32) * 0.02
                data[name] = t
            weight_map[name] = fname
        save_file(data, str(out / fname), metadata={"format": "pt"})
        total += (out / fname).stat().st_size
        del data
        print(f"  shard {k + 1}/{len(shards)} written ({total / 1e9:.1f} GB so far)", file=sys.stderr, flush=True)
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                 "weight_map": weight_map}))
    return total


def convert(ckpt: Path, out: Path, gguf_type: str, parity_batches: int, timeout_s: float | None = None) -> dict:
    """``forgeml convert`` as a child process; wall seconds and peak RSS (GNU time -v)."""
    cmd = [sys.executable, "-m", "forgeml", "convert", str(ckpt), "--to", "gguf", "--gguf-type", gguf_type,
           "-o", str(out), "--force", "--parity-batches", str(parity_batches)]
    timing = out.parent / f"{out.name}.time"
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    t0 = time.perf_counter()
    p = subprocess.Popen(([gnu_time, "-v", "-o", str(timing)] if gnu_time else []) + cmd, start_new_session=True)
    try:
        rc = p.wait(timeout=timeout_s)
    except BaseException:  # timed out or interrupted: the conversion's own session goes too
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()
        raise
    wall = time.perf_counter() - t0
    rss = None
    if gnu_time and timing.is_file():
        for line in timing.read_text().splitlines():
            if "Maximum resident set size" in line:
                rss = int(line.rsplit(":", 1)[1]) / 2**20
        timing.unlink()
    return {"rc": rc, "wall_s": round(wall, 1), "peak_rss_gib": None if rss is None else round(rss, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=30.0, help="checkpoint size in GB (default 30)")
    ap.add_argument("--shard-gb", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "forgeml" / "big-checkpoint")
    ap.add_argument("--type", default="q8_0")
    ap.add_argument("--parity-batches", type=int, default=0, help="seeded batches besides the example (default 0)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint and the GGUF")
    ap.add_argument("--timeout", type=float, default=None, help="give the conversion at most this many seconds")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the directories are still deleted
    from forgeml.runtime.machine import print_machine

    print_machine()
    ckpt, out = args.dir / "checkpoint", args.dir / "out"
    try:
        if not (ckpt / "model.safetensors.index.json").is_file():
            shutil.rmtree(ckpt, ignore_errors=True)
            dims = shape_for(args.gb)
            t0 = time.perf_counter()
            total = build(ckpt, dims, int(args.shard_gb * 1e9))
            print(f"built {ckpt}: {total / 1e9:.1f} GB, {dims['layers']} layers, {time.perf_counter() - t0:.0f} s")
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors")) / 2**30
        print(f"checkpoint {size:.1f} GiB, RAM {ram:.1f} GiB")
        r = convert(ckpt, out, args.type, args.parity_batches, args.timeout)
        print(f"forgeml convert --to gguf --gguf-type {args.type}: rc {r['rc']}, wall {r['wall_s']} s, "
              f"peak RSS {r['peak_rss_gib']} GiB ({(r['peak_rss_gib'] or 0) / ram:.2f}x RAM)")
        manifest = out / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            for st in m["stages"]:
                rows = (st.get("parity") or {}).get("rows", [{}])
                print(f"  {st['name']:24} {st['seconds']:8.1f} s  "
                      + json.dumps({k: rows[0].get(k) for k in ("cosine", "top1", "top1_margin", "passed")}
                                   if rows and rows[0] else {}))
        return r["rc"]
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
