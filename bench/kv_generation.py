"""Generation parity of the KV-cache decoder exports: greedy tokens vs transformers, per architecture.

For each zoo decoder, one fp32 run (``--to onnx``) and one int4 run (``--quantize int4``, MatMulNBits)
through the whole pipeline; the table gives, per stage and runtime (onnxruntime, onnxruntime-genai),
how many of the reference's greedy tokens were matched before the first divergence, where that
divergence is, and the per-step logits' max abs error and cosine up to it.

    PYTHONPATH=. python bench/kv_generation.py [--archs tiny-llama,tiny-qwen2,tiny-gpt2,tiny-phi3]
        [--tokens 32] [--modes fp32,int4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from forgeml.runtime.machine import print_machine


def rows(manifest: dict):
    for st in manifest["stages"]:
        for r in st.get("parity", {}).get("rows", []):
            if r["output"].startswith("generation"):
                runtime = "onnxruntime-genai" if "onnxruntime-genai" in r["output"] else "onnxruntime"
                yield st["name"], runtime, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="tiny-llama,tiny-qwen2,tiny-gpt2,tiny-phi3")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--modes", default="fp32,int4")
    args = ap.parse_args()
    print_machine()
    import forgeml
    from forgeml.options import ParityOptions

    print("| model | run | stage | runtime | tokens matched | first divergence | max abs (logits) | cosine | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for mode in args.modes.split(","):
                out = Path(tmp) / f"{arch}-{mode}"
                run = forgeml.convert(f"zoo:{arch}", targets=["onnx"], out_dir=out, passes=[],
                                      quantize=None if mode == "fp32" else mode,
                                      parity=ParityOptions(batches=1, generate_tokens=args.tokens))
                for stage, runtime, r in rows(run.manifest):
                    if mode != "fp32" and stage == "hf->onnx":
                        continue  # the fp32 run shows it
                    first = r.get("first_divergence", "none").split(":")[0].replace("tokens differ first at ", "")
                    print(f"| {arch} | {mode} | {stage} | {runtime} | {r.get('tokens_matched', '?')} | {first} | "
                          f"{r.get('max_abs', float('nan')):.3g} | {r.get('cosine', float('nan')):.6f} | "
                          f"{'pass' if r['passed'] else 'FAIL'} |", flush=True)


if __name__ == "__main__":
    main()
