"""The ``forgeml`` command: parses, calls the API, prints. Nothing here converts anything.

Exit codes: 0 every stage within tolerance; 1 a parity failure (report still written);
2 bad input or usage, or a target that could not be built. ``--debug`` anywhere shows tracebacks.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Convert models between frameworks and runtimes, and prove every step numerically.\n\n"
         "Add --debug anywhere to see tracebacks and framework logs.",
)
zoo_app = typer.Typer(help="The built-in models (zoo:NAME sources).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


def _err():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _out():
    from rich.console import Console

    return Console(highlight=False)


def _split(values: Optional[List[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def convert(
    src: str = typer.Argument(..., help="model file, zoo:NAME, or python:module:function"),
    to: List[str] = typer.Option(["onnx"], "--to", "-t", help="targets, comma-separated: onnx,safetensors"),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="output directory"),
    passes: Optional[str] = typer.Option(None, "--passes", help="passes in order, comma-separated "
                                         "(default: check,simplify,cleanup; '' for none)"),
    inputs: Optional[List[Path]] = typer.Option(None, "--inputs", help="extra parity inputs: .npz keyed by input name"),
    input_spec: Optional[List[str]] = typer.Option(None, "--input", help="name:DIMS:dtype for sources without "
                                                   "example inputs, e.g. x:1x3x224x224:float32"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="make the batch axis dynamic"),
    opset: Optional[int] = typer.Option(None, "--opset"),
    parity_batches: int = typer.Option(3, "--parity-batches", help="seeded random batches besides the example"),
    atol: Optional[float] = typer.Option(None, "--atol", help="override the profile's absolute tolerance"),
    rtol: Optional[float] = typer.Option(None, "--rtol", help="override the profile's relative tolerance"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="fp16 | int8 | int8-static | int4"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="calibration data: .npz keyed by input name, "
                                         "first axis = samples"),
    calib_synthetic: bool = typer.Option(False, "--calib-synthetic", help="int8-static without --calib: calibrate "
                                         "on seeded random inputs (flagged in the report as not representative)"),
    max_cosine_drop: Optional[float] = typer.Option(None, "--max-cosine-drop", help="accuracy budget of the "
                                                    "--quantize stage: 1 - cosine vs the float model "
                                                    "(default: the precision's profile)"),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="accuracy budget of the --quantize stage: "
                                             "top-1 agreement with the float model (default: the profile's)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow loading pickle-based files"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory"),
    report: Optional[Path] = typer.Option(None, "--report", help="also write the markdown report here"),
):
    """Convert SRC to the --to targets, checking parity after every stage."""
    import forgeml
    from forgeml.passes import DEFAULT_PASSES, make_pass
    from forgeml.pipeline import PipelineConfig, ToleranceOverrides, run
    from forgeml.converters import ImportOptions
    from forgeml.sources import resolve
    from forgeml.validation.inputs import load_calibration, parse_input_spec

    del forgeml
    err = _err()
    targets = _split(to)
    pass_names = list(DEFAULT_PASSES) if passes is None else _split([passes])
    pass_objs = tuple(make_pass(p) for p in pass_names)
    if quantize:
        from forgeml.passes.modes import quantize_pipeline

        pass_objs += tuple(quantize_pipeline(quantize, has_calibration=calib is not None,
                                             calib_synthetic=calib_synthetic, max_cosine_drop=max_cosine_drop,
                                             min_top1=min_top1))
    elif calib_synthetic or max_cosine_drop is not None or min_top1 is not None:
        from forgeml.errors import InputError

        raise InputError("--calib-synthetic, --max-cosine-drop and --min-top1 apply to --quantize; add "
                         "--quantize fp16|int8|int8-static|int4")
    specs = tuple(parse_input_spec(s) for s in input_spec or [])
    if out.exists() and out.is_dir() and any(out.iterdir()) and not force:
        from forgeml.errors import InputError

        raise InputError(f"output directory {out} already exists and is not empty; pass --force to replace it")
    with err.status(f"loading {src} …"):
        resolved = resolve(src)
    user_inputs = ()
    if inputs:
        # Checked against the signature after import; loaded here so a bad file fails before export.
        user_inputs = tuple(_load_npz_unchecked(p) for p in inputs)
    config = PipelineConfig(
        targets=tuple(targets), passes=pass_objs,
        import_options=ImportOptions(dynamic_batch=dynamic_batch, input_specs=specs, opset=opset,
                                     trust_pickle=trust_pickle),
        parity_batches=parity_batches, user_inputs=user_inputs,
        quantize=quantize, calibration=tuple(load_calibration(calib)) if calib else (),
        tolerance=ToleranceOverrides(atol=atol, rtol=rtol, quantized=ToleranceOverrides(
            min_cosine=None if max_cosine_drop is None else 1.0 - max_cosine_drop, min_top1=min_top1)),
        command=" ".join(shlex.quote(a) for a in ["forgeml", *sys.argv[1:]]),
    )
    status = err.status("")
    status.start()

    def on_event(e):
        if e.status == "start":
            status.update(f"{e.kind} [bold]{e.name}[/] …")
            return
        if e.status == "failed":
            err.print(f"  [red]✗[/] {e.kind:9} {e.name:16} {e.seconds:6.2f}s  [red]{e.message}[/]")
            return
        mark = "[green]✓[/]" if e.passed else "[red]✗ parity[/]"
        err.print(f"  {mark} {e.kind:9} {e.name:16} {e.seconds:6.2f}s")

    try:
        result = run(resolved, config, out, force=force, on_event=on_event)
    finally:
        status.stop()
    if report:
        result.save_report(report)
    _print_summary(result)
    raise typer.Exit(result.exit_code)


def _load_npz_unchecked(path: Path) -> dict:
    import zipfile

    import numpy as np

    from forgeml.errors import InputError

    if not path.is_file():
        raise InputError(f"--inputs {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"--inputs {path}: not a readable .npz file ({e})") from e


def _print_summary(result) -> None:
    from rich.table import Table

    out = _out()
    table = Table(title="parity vs " + (result.manifest["stages"][0]["parity"]["reference"]), title_justify="left")
    for col in ("stage", "output", "max abs", "cosine", "top-1", "verdict"):
        table.add_column(col)
    for stage, parity in result.parity.stages:
        for row in parity.rows:
            top1 = row.get("top1")
            table.add_row(f"{stage} ({parity.profile.name})", row["output"],
                          f"{row['max_abs']:.2e}" if "max_abs" in row else "–",
                          f"{row['cosine']:.6f}" if "cosine" in row else "–",
                          f"{top1:.3f}" if top1 is not None else "–",
                          "[green]pass[/]" if row["passed"] else f"[red]FAIL[/] {row.get('problem', '')}")
    out.print(table)
    for name, why in result.errors.items():
        out.print(f"[red]target {name} failed:[/] {why}")
    verdict = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
    out.print(f"{verdict}  {len(result.artifacts)} artifact(s) in {result.out_dir}  "
              f"(manifest.json, report.md)")


@app.command()
def inspect(file: Path = typer.Argument(..., help=".onnx or .safetensors file"),
            as_json: bool = typer.Option(False, "--json", help="print the raw JSON")):
    """Signature, ops, parameter count, bytes and metadata of an artifact."""
    from forgeml.inspection import inspect_file

    info = inspect_file(file)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out = _out()
    out.print(f"[bold]{info['path']}[/]  {info['format']}  {info['bytes']:,} bytes")
    skip = {"path", "format", "bytes", "tensor_table", "inputs", "outputs", "ops", "metadata"}
    for k, v in info.items():
        if k not in skip:
            out.print(f"  {k}: {v}")
    for kind in ("inputs", "outputs"):
        for t in info.get(kind, []):
            out.print(f"  {kind[:-1]:6} {t['name']}: {t['shape']} {t['dtype']}")
    if info.get("ops"):
        out.print("  ops: " + ", ".join(f"{op}×{n}" for op, n in info["ops"].items()))
    for k, v in (info.get("metadata") or {}).items():
        text = v if len(str(v)) < 120 else str(v)[:117] + "…"
        out.print(f"  meta {k}: {text}")
    for t in (info.get("tensor_table") or [])[:50]:
        out.print(f"  {t['name']:50} {t['dtype']:5} {t['shape']}")
    if len(info.get("tensor_table") or []) > 50:
        out.print(f"  … {len(info['tensor_table']) - 50} more tensors (--json for all)")


@zoo_app.command("list")
def zoo_list():
    """The built-in models."""
    from models_zoo import ZOO

    out = _out()
    for m in ZOO.values():
        out.print(f"zoo:{m.name:14} {m.kind:10} {m.description}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ForgeErrors become one line and their exit code; --debug shows the traceback."""
    from forgeml.errors import ForgeError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=args, prog_name="forgeml", standalone_mode=False)
        return 0
    except typer.Exit as e:
        return e.exit_code
    except ForgeError as e:
        if debug:
            import traceback

            traceback.print_exc()
        _err().print(f"[red]forgeml: error:[/] {e}", soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        _err().print("forgeml: interrupted")
        return 130
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.UsageError):
            e.show()
            return 2
        if isinstance(e, click.exceptions.Abort):
            return 1
        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        raise


if __name__ == "__main__":
    sys.exit(main())
