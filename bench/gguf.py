"""GGUF conversion as a user runs it: whole-process wall time and peak RSS, side by side.

Each run is one fresh process tree (its own session), started from here and measured from outside:
wall time from spawn to exit, peak RSS as the largest sum of RSS over the process and all of its
descendants, sampled every 20 ms with psutil (without psutil: GNU ``/usr/bin/time``'s maximum RSS of
the largest single process). Nothing is measured in-process, so no run inherits another's peak.

Runs alternate per type (forgeml, the optional baseline tree, llama.cpp's converter) so that a
shared machine's load spreads over all of them; each is repeated ``--repeat`` times and the table
gives min–max with ratios of the medians to llama.cpp's converter (or to the baseline).

    PYTHONPATH=. python bench/gguf.py [--checkpoint DIR | --size 1g|440m] [--types f16,q8_0]
        [--repeat 2] [--baseline /work/main] [--llama-convert PATH/convert_hf_to_gguf.py]
        [--parity-batches N]
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # BigSpec fields: ~1 GB (504 M parameters, 8 layers) and the ~440 MB default
    "1g": dict(hidden=2048, layers=8, heads=16, kv_heads=8, ffn=5632, vocab=32000, seed=0),
    "440m": {},
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(cmd: list[str], env: dict) -> dict:
    """Wall seconds and peak tree RSS (MiB) of ``cmd`` run as a fresh session; rc and last stderr line."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is None:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True,
                           start_new_session=True, cwd=tempfile.gettempdir())
        wall = time.perf_counter() - t0
        lines = p.stderr.strip().splitlines()
        return {"rc": p.returncode, "wall": wall, "rss_mib": int(lines[-1]) / 1024 if lines else float("nan"),
                "how": "GNU time (largest process)", "tail": lines[-2:-1]}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        # cwd: a neutral dir, so that `python -m forgeml` imports the tree PYTHONPATH names, not the cwd's
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                             cwd=tempfile.gettempdir())
        root, peak = psutil.Process(p.pid), 0
        while p.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(q) for q in procs))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
    return {"rc": p.returncode, "wall": wall, "rss_mib": peak / 2**20, "how": "psutil tree sum", "tail": tail}


def _rss(proc) -> int:
    try:
        return proc.memory_info().rss
    except Exception:  # the process ended between listing and reading
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a checkpoint dir (default: build one with --size)")
    ap.add_argument("--size", default="1g", choices=sorted(SIZES))
    ap.add_argument("--types", default="f16,q8_0")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline", help="another forgeml tree (its PYTHONPATH) to run beside this one")
    ap.add_argument("--llama-convert", type=Path, help="llama.cpp's convert_hf_to_gguf.py (needs gguf-py)")
    ap.add_argument("--parity-batches", type=int, default=None, help="pass --parity-batches N to forgeml")
    args = ap.parse_args()
    print_machine()  # first line: which CPU these numbers belong to
    here = str(Path(__file__).resolve().parents[1])
    ckpt = args.checkpoint
    if ckpt is None:
        from models_zoo.hf_models import BigSpec, big_checkpoint

        print("building/reusing the bench checkpoint …", file=sys.stderr)
        ckpt = big_checkpoint(BigSpec(**SIZES[args.size]))
    model_mib = sum(f.stat().st_size for f in ckpt.glob("*.safetensors")) / 2**20
    print(f"cpu: {cpu_model()}")
    print(f"checkpoint: {ckpt}  {model_mib:.0f} MiB safetensors")

    def forgeml(tree: str, typ: str, out: Path) -> tuple[list[str], dict]:
        cmd = [sys.executable, "-m", "forgeml", "convert", str(ckpt), "--to", "gguf", "--gguf-type", typ,
               "-o", str(out), "--force"]
        if args.parity_batches is not None:
            cmd += ["--parity-batches", str(args.parity_batches)]
        return cmd, {**os.environ, "PYTHONPATH": tree}

    runners = {"forgeml": lambda typ, out: forgeml(here, typ, out)}
    if args.baseline:
        runners["baseline"] = lambda typ, out: forgeml(args.baseline, typ, out)
    if args.llama_convert:
        runners["llama.cpp"] = lambda typ, out: ([sys.executable, str(args.llama_convert), str(ckpt), "--outtype",
                                                 typ, "--outfile", str(out / "model.gguf")], dict(os.environ))
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="forgeml-bench-gguf-") as tmp:
        for typ in args.types.split(","):
            for rep in range(args.repeat):
                for name, make in runners.items():
                    out = Path(tmp) / f"{name}-{typ}"
                    out.mkdir(exist_ok=True)
                    cmd, env = make(typ, out)
                    r = measure(cmd, env)
                    results.setdefault((typ, name), []).append(r)
                    print(f"  {typ:5} {name:9} run {rep + 1}: {r['wall']:7.1f} s  {r['rss_mib']:8.0f} MiB  rc {r['rc']}"
                          + (f"  {r['tail']}" if r["rc"] else ""), file=sys.stderr, flush=True)
    print(f"{'type':5} {'run':9} {'wall s (min–max)':>18} {'peak RSS MiB':>14} {'RSS/ckpt':>9} {'wall ratio':>11} "
          f"{'RSS ratio':>10}")
    base_name = "llama.cpp" if args.llama_convert else ("baseline" if args.baseline else None)
    for typ in args.types.split(","):
        base = results.get((typ, base_name)) if base_name else None
        for name in runners:
            rs = [r for r in results.get((typ, name), []) if r["rc"] in (0, 1)]  # 1: finished, parity FAIL
            if not rs:
                print(f"{typ:5} {name:9} FAILED")
                continue
            wall, rss = statistics.median(r["wall"] for r in rs), statistics.median(r["rss_mib"] for r in rs)
            walls = f"{min(r['wall'] for r in rs):.1f}–{max(r['wall'] for r in rs):.1f}"
            ok_base = [r for r in (base or []) if r["rc"] in (0, 1)]
            ratio_w = ratio_r = "–"
            if ok_base:
                ratio_w = f"{wall / statistics.median(r['wall'] for r in ok_base):.2f}x"
                ratio_r = f"{rss / statistics.median(r['rss_mib'] for r in ok_base):.2f}x"
            fails = sum(r["rc"] == 1 for r in rs)
            print(f"{typ:5} {name:9} {walls:>18} {rss:14.0f} {rss / model_mib:9.2f} {ratio_w:>11} {ratio_r:>10}"
                  + (f"  ({fails} run(s) exit 1: parity FAIL)" if fails else ""))
    if base_name:
        how = next((r["how"] for rs in results.values() for r in rs), "?")
        print(f"ratios: median of each run over {base_name}'s median; peak RSS by {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
