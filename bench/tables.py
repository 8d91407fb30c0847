"""Regenerates the README's benchmark tables in one command, each stamped with the CPU that made it.

    python bench/tables.py --write-readme                 # run both benches, replace the README's blocks
    python bench/tables.py --only bert --bench-args "--layers 12 --repeats 30"
    python bench/tables.py --from-json quantize=q.json bert=b.json --write-readme   # splice saved runs

Each table lives in README.md between ``<!-- tables:NAME -->`` and ``<!-- /tables:NAME -->``; what is
between them is replaced whole (the machine line, the command and its table), so a table never
outlives the CPU line that says where it was measured. Without ``--write-readme`` the blocks are
printed. Benchmarks run one after the other (never two timings at once).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = {"quantize": ROOT / "bench" / "quantize.py", "bert": ROOT / "bench" / "bert.py"}


def block(name: str, result: dict) -> str:
    return (f"<!-- tables:{name} -->\n"
            f"Measured on: {result['machine']}\n\n{result['header']}\n\n{result['markdown']}\n"
            f"<!-- /tables:{name} -->")


def splice(readme: str, name: str, new_block: str) -> str:
    """``readme`` with the block ``name`` replaced; refuses a README without the markers (nothing is guessed)."""
    pattern = re.compile(rf"<!-- tables:{re.escape(name)} -->.*?<!-- /tables:{re.escape(name)} -->", re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no <!-- tables:{name} --> … <!-- /tables:{name} --> block to replace")
    return pattern.sub(lambda _: new_block, readme, count=1)


def run_bench(name: str, extra: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="forgeml-tables-") as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(BENCHES[name]), "--json", str(out), *shlex.split(extra)]
        print("#", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(BENCHES), action="append", help="this table only (repeatable)")
    ap.add_argument("--bench-args", default="", help="extra arguments for the bench(es) run")
    ap.add_argument("--from-json", nargs="*", default=[], metavar="NAME=FILE", help="splice saved --json results")
    ap.add_argument("--write-readme", action="store_true", help="replace the blocks in README.md")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    results = {}
    for item in args.from_json:
        name, _, path = item.partition("=")
        results[name] = json.loads(Path(path).read_text())
    if not args.from_json:
        for name in args.only or sorted(BENCHES):
            results[name] = run_bench(name, args.bench_args)
    text = args.readme.read_text()
    for name, result in results.items():
        new = block(name, result)
        if args.write_readme:
            text = splice(text, name, new)
        else:
            print(new)
    if args.write_readme:
        tmp = args.readme.with_name(f".{args.readme.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, args.readme)
        print(f"wrote {args.readme} ({', '.join(results)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
