"""GGUF conversion as a user runs it: whole-process wall time and peak RSS, side by side.

Each run is one fresh process, started from here (a small process that never imports torch, so no
child inherits a large parent's peak) in its own session and measured from outside: wall time from
spawn to exit, peak RSS from GNU ``/usr/bin/time -v`` ("Maximum resident set size": the largest
process of the tree; forgeml and llama.cpp's converter each run in one process) or, without it,
``os.wait4`` on the direct child. Nothing is measured in-process.

Runs alternate per type (forgeml with logits parity, forgeml with ``--no-output-parity``, llama.cpp's
converter, an optional baseline tree) so that a shared machine's load spreads over all of them; each
is repeated ``--repeat`` times and the table gives min–max with ratios of the medians to llama.cpp's
converter and to the checkpoint's bytes.

llama.cpp's ``convert_hf_to_gguf.py``: ``--llama-convert auto`` downloads the llama-cpp-python sdist
(``pip download --no-binary :all:``) once into ``~/.cache/forgeml-bench/`` and runs the converter
with the sdist's own ``gguf-py`` first on PYTHONPATH (the converter of 0.3.36 does not run with the
gguf 0.19 from PyPI).

    PYTHONPATH=. python bench/gguf.py [--checkpoint DIR | --size 1g|440m] [--types f16,q8_0]
        [--repeat 1] [--baseline /work/main] [--llama-convert auto|PATH/convert_hf_to_gguf.py]
        [--modes parity,no-output] [--baseline-modes parity,no-parity]
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SIZES = {  # BigSpec fields: ~1 GB (504 M parameters, 8 layers) and the ~440 MB default
    "1g": dict(hidden=2048, layers=8, heads=16, kv_heads=8, ffn=5632, vocab=32000, seed=0),
    "440m": {},
}
LLAMA_CPP_PYTHON = "0.3.36"
# forgeml's extra flags per mode: logits parity on the default sets; on the example rows only; outputs not
# compared at all (no reference, no llama.cpp: the per-tensor weight check alone)
MODES = {"parity": [], "no-parity": ["--parity-batches", "0"], "no-output": ["--no-output-parity"]}


def measure(cmd: list[str], env: dict) -> dict:
    """Wall seconds and peak RSS (MiB) of ``cmd`` run as a fresh session; rc and last stderr line."""
    with tempfile.TemporaryDirectory(prefix="forgeml-bench-run-") as cwd:
        # cwd: a neutral dir, so that `python -m forgeml` imports the tree PYTHONPATH names, not the cwd's
        err_path = Path(cwd) / "stderr"
        gnu_time = shutil.which("time", path="/usr/bin:/bin")
        t0 = time.perf_counter()
        with open(err_path, "wb") as err:
            p = subprocess.Popen([gnu_time, "-v", "-o", str(Path(cwd) / "time.txt"), *cmd] if gnu_time else cmd,
                                 env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            try:
                _, status, usage = os.wait4(p.pid, 0)
            except BaseException:  # interrupted: the run's own session goes with it
                os.killpg(p.pid, signal.SIGTERM)
                raise
            rc = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        tail = err_path.read_text(errors="replace").strip().splitlines()[-1:]
        if gnu_time:
            fields = dict(line.strip().rsplit(": ", 1) for line in (Path(cwd) / "time.txt").read_text().splitlines()
                          if ": " in line)
            rss_kib, how = int(fields.get("Maximum resident set size (kbytes)", 0)), "GNU time -v"
            rc = int(fields.get("Exit status", rc))
        else:
            rss_kib, how = usage.ru_maxrss, "os.wait4 ru_maxrss"
    return {"rc": rc, "wall": wall, "rss_mib": rss_kib / 1024, "how": how, "tail": tail}


def llama_convert_script(cache: Path) -> tuple[Path, Path]:
    """(convert_hf_to_gguf.py, its gguf-py dir) from llama-cpp-python's sdist, downloaded once."""
    root = cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}"
    script = root / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    if not script.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "--no-deps",
                        "--no-binary", ":all:", "-d", str(cache)], check=True, stdout=subprocess.DEVNULL)
        with tarfile.open(cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz") as tar:
            tar.extractall(cache, filter="data")
    return script, script.parent / "gguf-py"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a checkpoint dir (default: build one with --size)")
    ap.add_argument("--size", default="1g", choices=sorted(SIZES))
    ap.add_argument("--types", default="f16,q8_0")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline", help="another forgeml tree (its PYTHONPATH) to run beside this one")
    ap.add_argument("--llama-convert", help="llama.cpp's convert_hf_to_gguf.py, or 'auto' (the sdist's, cached)")
    ap.add_argument("--modes", default="parity,no-output", help=f"forgeml runs: {', '.join(MODES)}")
    ap.add_argument("--baseline-modes", default="parity,no-parity", help="the baseline tree's runs (an older "
                    "tree may lack a mode's flag)")
    args = ap.parse_args()
    print_machine()  # first line: which CPU these numbers belong to
    here = str(Path(__file__).resolve().parents[1])
    ckpt = args.checkpoint
    if ckpt is None:
        from models_zoo.hf_models import BigSpec, big_checkpoint

        print("building/reusing the bench checkpoint …", file=sys.stderr)
        ckpt = big_checkpoint(BigSpec(**SIZES[args.size]))
    model_mib = sum(f.stat().st_size for f in ckpt.glob("*.safetensors")) / 2**20
    print(f"checkpoint: {ckpt}  {model_mib:.0f} MiB safetensors")

    def forgeml(tree: str, mode: str, typ: str, out: Path) -> tuple[list[str], dict]:
        cmd = [sys.executable, "-m", "forgeml", "convert", str(ckpt), "--to", "gguf", "--gguf-type", typ,
               "-o", str(out), "--force", *MODES[mode]]
        return cmd, {**os.environ, "PYTHONPATH": tree}

    runners = {}
    for mode in args.modes.split(","):
        runners[f"forgeml {mode}"] = lambda typ, out, mode=mode: forgeml(here, mode, typ, out)
    for mode in args.baseline_modes.split(",") if args.baseline else ():
        runners[f"baseline {mode}"] = lambda typ, out, mode=mode: forgeml(args.baseline, mode, typ, out)
    if args.llama_convert:
        if args.llama_convert == "auto":
            script, gguf_py = llama_convert_script(Path.home() / ".cache" / "forgeml-bench")
        else:
            script = Path(args.llama_convert)
            gguf_py = script.parent / "gguf-py"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (gguf_py,) if p.is_dir())}
        runners["llama.cpp"] = lambda typ, out: ([sys.executable, str(script), str(ckpt), "--outtype", typ,
                                                 "--outfile", str(out / "model.gguf")], env)
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
                    print(f"  {typ:5} {name:18} run {rep + 1}: {r['wall']:7.1f} s  {r['rss_mib']:8.0f} MiB  rc {r['rc']}"
                          + (f"  {r['tail']}" if r["rc"] else ""), file=sys.stderr, flush=True)
    width = max(len(n) for n in runners)
    print(f"{'type':5} {'run':{width}} {'wall s (min–max)':>18} {'peak RSS MiB':>14} {'RSS/ckpt':>9} {'wall ratio':>11} "
          f"{'RSS ratio':>10}")
    base_name = "llama.cpp" if args.llama_convert else (f"baseline {args.baseline_modes.split(',')[0]}"
                                                         if args.baseline else None)
    for typ in args.types.split(","):
        base = results.get((typ, base_name)) if base_name else None
        for name in runners:
            rs = [r for r in results.get((typ, name), []) if r["rc"] in (0, 1)]  # 1: finished, parity FAIL
            if not rs:
                print(f"{typ:5} {name:{width}} FAILED")
                continue
            wall, rss = statistics.median(r["wall"] for r in rs), statistics.median(r["rss_mib"] for r in rs)
            walls = f"{min(r['wall'] for r in rs):.1f}–{max(r['wall'] for r in rs):.1f}"
            ok_base = [r for r in (base or []) if r["rc"] in (0, 1)]
            ratio_w = ratio_r = "–"
            if ok_base:
                ratio_w = f"{wall / statistics.median(r['wall'] for r in ok_base):.2f}x"
                ratio_r = f"{rss / statistics.median(r['rss_mib'] for r in ok_base):.2f}x"
            fails = sum(r["rc"] == 1 for r in rs)
            print(f"{typ:5} {name:{width}} {walls:>18} {rss:14.0f} {rss / model_mib:9.2f} {ratio_w:>11} {ratio_r:>10}"
                  + (f"  ({fails} run(s) exit 1: parity FAIL)" if fails else ""))
    if base_name:
        how = next((r["how"] for rs in results.values() for r in rs), "?")
        print(f"ratios: median of each run over {base_name}'s median; peak RSS by {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
