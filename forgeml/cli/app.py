"""The ``forgeml`` command: parses, calls the API, prints. Nothing here converts anything.

Exit codes: 0 every stage within tolerance; 1 a parity failure (report still written), or with
``--fail-on warn`` a warning; 2 bad input or usage, or a target that could not be built.
``--json`` prints one JSON summary on stdout for CI. ``--debug`` anywhere shows tracebacks.
"""

from __future__ import annotations

import json
import os
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
report_app = typer.Typer(help="Work with parity reports and manifests.", no_args_is_help=True)
app.add_typer(report_app, name="report")


def _err():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _out():
    from rich.console import Console

    return Console(highlight=False)


def _escape(text: str) -> str:
    """Messages carry square brackets (pip extras like forgeml[torch]) that rich would take for markup."""
    from rich.markup import escape

    return escape(text)


def _split(values: Optional[List[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def convert(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="model file, zoo:NAME, or python:module:function"),
    to: List[str] = typer.Option(["onnx"], "--to", "-t", help="targets, comma-separated: onnx,safetensors,tensorrt,torch-aoti"),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="output directory"),
    passes: Optional[str] = typer.Option(None, "--passes", help="passes in order, comma-separated "
                                         "(default: check,simplify,cleanup; '' for none)"),
    inputs: Optional[List[Path]] = typer.Option(None, "--inputs", help="extra parity inputs: .npz keyed by input name"),
    input_spec: Optional[List[str]] = typer.Option(None, "--input", help="name:DIMS:dtype for sources without "
                                                   "example inputs, e.g. x:1x3x224x224:float32"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="make the batch axis dynamic"),
    no_kv_cache: bool = typer.Option(False, "--no-kv-cache", help="causal LMs: export input_ids -> logits "
                                     "without the KV cache (the signature a gguf file is compared on)"),
    opset: Optional[int] = typer.Option(None, "--opset"),
    parity_batches: Optional[int] = typer.Option(None, "--parity-batches", min=0, help="seeded random batches "
                                                 "besides the example (default 3; 0 when no target reads the ONNX "
                                                 "IR, e.g. --to gguf: each position is a forward of the whole LLM "
                                                 "in both runtimes)"),
    held_out_samples: int = typer.Option(64, "--held-out-samples", min=0, help="with --quantize: fresh samples every "
                                         "fp16/int8/int4 stage is also judged on (no pass saw them)"),
    no_output_parity: bool = typer.Option(False, "--no-output-parity", help="targets written from the source "
                                          "(gguf, safetensors): skip comparing the artifact's outputs with the "
                                          "source framework (not even loaded); the artifact's own checks still run"),
    gen_tokens: int = typer.Option(32, "--gen-tokens", min=0, help="KV-cache decoders: greedy tokens per prompt "
                                   "in generation parity (0: none)"),
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
    min_centered_cosine: Optional[float] = typer.Option(None, "--min-centered-cosine", help="accuracy budget of "
                                                        "the --quantize stage on the input-dependent part of the "
                                                        "outputs (centered cosine vs the float model, centered over all samples)"),
    calib_method: str = typer.Option("minmax", "--calib-method", help="int8-static activation ranges from "
                                     "calibration: minmax | entropy | percentile"),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="accuracy budget of the --quantize stage: "
                                             "top-1 agreement with the float model (default: the profile's)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow loading pickle-based files"),
    signature: Optional[str] = typer.Option(None, "--signature", help="SavedModel signature to convert "
                                            "(default: serving_default)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory"),
    report: Optional[Path] = typer.Option(None, "--report", help="also write the report here: .html for HTML, "
                                          "anything else markdown (report.md and report.html are always in OUT)"),
    localize: bool = typer.Option(False, "--localize", help="when a stage fails, find its first diverging node "
                                  "whatever the model's size (done automatically for small graphs)"),
    fail_on: str = typer.Option("fail", "--fail-on", help="exit 1 on: fail (a parity failure) | warn (also warnings)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary on stdout instead of the table"),
    trt_profile: Optional[List[str]] = typer.Option(None, "--trt-profile", help="TensorRT shapes for a dynamic "
                                                    "input: name:MIN:OPT:MAX, e.g. x:1x3x32x32:8x3x32x32:32x3x32x32"),
    trt_workspace: Optional[int] = typer.Option(None, "--trt-workspace", help="TensorRT builder workspace, MiB"),
    trt_timing_cache: Optional[Path] = typer.Option(None, "--trt-timing-cache", help="TensorRT timing cache file, "
                                                    "reused between builds (default: ~/.cache/forgeml/tensorrt/)"),
    trt_plugin: Optional[List[str]] = typer.Option(None, "--trt-plugin", help="custom ops you load TensorRT "
                                                   "plugins for"),
    gguf_type: Optional[str] = typer.Option(None, "--gguf-type", help="gguf target weights: f32 | f16 | bf16 | "
                                            "q8_0 | q4_0 | q4_k_m | q5_k_m | q6_k (default f16)"),
    triton_name: Optional[str] = typer.Option(None, "--triton-name", help="triton target: the model's name in "
                                              "model_repository/ (default: from SRC)"),
    triton_max_batch: Optional[int] = typer.Option(None, "--triton-max-batch", help="triton target: max_batch_size "
                                                   "when the batch dim is dynamic (default 8)"),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="log the finished package to MLflow: [URI] of the "
                                         "tracking server or store (bare --mlflow: MLFLOW_TRACKING_URI / the "
                                         "active run); needs forgeml[mlflow]"),
    mlflow_experiment: Optional[str] = typer.Option(None, "--mlflow-experiment", help="MLflow experiment for "
                                                    "the new run"),
    register: Optional[str] = typer.Option(None, "--register", help="with --mlflow: register the first artifact "
                                           "as a new version of this registered model"),
    alias: Optional[str] = typer.Option(None, "--alias", help="with --register: set this alias on the version"),
):
    """Convert SRC to the --to targets, checking parity after every stage."""
    from forgeml.converters import ImportOptions
    from forgeml.fileio import check_out_dir
    from forgeml.options import ParityOptions, QuantizeOptions
    from forgeml.pipeline.config import build_config
    from forgeml.pipeline.run import run
    from forgeml.pipeline.sources import resolve
    from forgeml.parity.inputs import load_calibration, parse_input_spec, read_npz

    err = _err()
    _check_fail_on(fail_on)
    check_out_dir(out, force)
    if report is not None and not (report.parent.resolve().is_dir() and os.access(report.parent.resolve(), os.W_OK)):
        from forgeml.errors import InputError

        raise InputError(f"--report {report}: its directory does not exist or is not writable")
    if not quantize and (calib or calib_synthetic or max_cosine_drop is not None or min_top1 is not None
                         or min_centered_cosine is not None or calib_method != "minmax"):
        from forgeml.errors import InputError

        raise InputError("--calib, --calib-synthetic, --calib-method, --max-cosine-drop, --min-centered-cosine and "
                         "--min-top1 apply to --quantize; add "
                         "--quantize fp16|int8|int8-static|int4")
    target_configs = _target_configs(trt_profile, trt_workspace, trt_timing_cache, trt_plugin, gguf_type,
                                     triton_name, triton_max_batch)
    mlflow_options = _mlflow_options(mlflow, mlflow_experiment, register, alias)
    # Everything is checked and read before the (slow) import, so a wrong flag or file fails at once;
    # inputs are checked against the model's signature once it is imported.
    config = build_config(
        targets=_split(to), passes=None if passes is None else _split([passes]),
        quantize=None if not quantize else QuantizeOptions(
            quantize, calibration=tuple(load_calibration(calib)) if calib else (),
            synthetic_calibration=calib_synthetic, max_cosine_drop=max_cosine_drop, min_top1=min_top1,
            min_centered_cosine=min_centered_cosine, calibrate_method=calib_method),
        parity=ParityOptions(batches=parity_batches, inputs=tuple(read_npz(p) for p in inputs or []), atol=atol,
                             rtol=rtol, localize="always" if localize else "auto", generate_tokens=gen_tokens,
                             held_out_samples=held_out_samples, fail_on=fail_on, outputs=not no_output_parity),
        import_options=ImportOptions(dynamic_batch=dynamic_batch,
                                     input_specs=tuple(parse_input_spec(s) for s in input_spec or []),
                                     opset=opset, trust_pickle=trust_pickle, signature=signature,
                                     kv_cache=not no_kv_cache),
        target_configs=target_configs,
        command=" ".join(shlex.quote(a) for a in ["forgeml", *(ctx.obj or {}).get("argv", sys.argv[1:])]),
        mlflow=mlflow_options,
    )
    with err.status(f"loading {src} …"):
        resolved = resolve(src)
    status = err.status("")
    status.start()
    from forgeml.cli.progress import ProgressText, bar_wanted

    bar = ProgressText() if bar_wanted(as_json) else None  # none for --json, CI=true or no TTY

    def on_event(e):
        if e.status == "progress":
            text = bar.render(e.name, e.kind, *e.progress) if bar is not None and e.progress else None
            if text:
                status.update(f"{e.kind} [bold]{_escape(e.name)}[/] {_escape(text)}")
            return
        if e.status == "start":
            if bar is not None:
                bar.started(e.name, e.kind)
            status.update(f"{e.kind} [bold]{_escape(e.name)}[/] …")
            return
        if e.status == "failed":
            why = "" if e.kind == "publish" else e.message  # publish raises: its line follows, in flags
            err.print(f"  [red]✗[/] {e.kind:9} {_escape(f'{e.name:16}')} {e.seconds:6.2f}s  [red]{_escape(why)}[/]")
            return
        mark = "[dim]–[/]" if e.passed is None else "[green]✓[/]" if e.passed else "[red]✗ parity[/]"
        err.print(f"  {mark} {e.kind:9} {_escape(f'{e.name:16}')} {e.seconds:6.2f}s")  # int8-static[tensorrt]

    try:
        result = run(resolved, config, out, force=force, on_event=on_event)
    except KeyboardInterrupt as e:
        raise _Interrupted(str(e)) from None
    finally:
        status.stop()
    if report:
        try:
            result.save_report(report)
        except OSError as e:
            from forgeml.errors import InputError

            raise InputError(f"--report {report}: could not write it ({e.strerror}); "
                             f"the run itself is complete in {result.out_dir}") from e
    from forgeml.report.gating import exit_code, summary

    code = exit_code(result.record, fail_on)
    if as_json:
        data = summary(result.record, out_dir=str(result.out_dir), fail_on=fail_on)
        if result.published is not None:
            data["mlflow"] = result.published.to_json()
        print(json.dumps(data, indent=2))
    else:
        _print_summary(result, fail_on)
        _print_divergence(result.record)
        if result.published is not None:
            _print_published(result.published)
    raise typer.Exit(code)


def _mlflow_options(uri: Optional[str], experiment: Optional[str], register: Optional[str], alias: Optional[str]):
    """--mlflow [URI] and its companions as ``MlflowOptions`` (None without --mlflow)."""
    from forgeml.errors import InputError
    from forgeml.options import MlflowOptions

    if uri is None:
        if experiment or register or alias:
            raise InputError("--mlflow-experiment, --register and --alias apply to --mlflow; add --mlflow [URI]")
        return None
    return MlflowOptions(tracking_uri=uri or None, experiment=experiment, register=register, alias=alias)


def _print_published(published) -> None:
    out = _out()
    out.print(f"MLflow: run {published.run_id} at {_escape(published.tracking_uri)}; models "
              + ", ".join(f"{t} {_escape(u)}" for t, u in published.models.items()), soft_wrap=True)
    if published.registered:
        out.print(f"MLflow: registered {_escape(published.registered)} version {published.version}"
                  + (f", loadable as {_escape(published.alias_uri)}" if published.alias_uri else ""), soft_wrap=True)


@app.command()
def publish(out: Path = typer.Argument(..., help="a finished forgeml output directory"),
            mlflow: str = typer.Option("", "--mlflow", help="tracking URI (default: MLFLOW_TRACKING_URI)"),
            mlflow_experiment: Optional[str] = typer.Option(None, "--mlflow-experiment", help="experiment for the run"),
            register: Optional[str] = typer.Option(None, "--register", help="register the first artifact as a new "
                                                   "version of this model"),
            alias: Optional[str] = typer.Option(None, "--alias", help="with --register: set this alias on it"),
            as_json: bool = typer.Option(False, "--json", help="print where it went as JSON")):
    """Log a finished output directory to MLflow (what convert --mlflow does at the end of a run)."""
    from forgeml.publish.mlflow import publish as log_package

    options = _mlflow_options(mlflow, mlflow_experiment, register, alias)
    with _err().status(f"logging {out} to MLflow …"):
        published = log_package(out, options)
    if as_json:
        print(json.dumps(published.to_json(), indent=2))
    else:
        _print_published(published)


def _check_fail_on(fail_on: str) -> None:
    from forgeml.errors import InputError
    from forgeml.report.gating import FAIL_ON

    if fail_on not in FAIL_ON:
        raise InputError(f"--fail-on {fail_on!r}: choose one of {', '.join(FAIL_ON)}")


def _print_divergence(manifest) -> None:
    err = _err()
    for st in manifest.stages:
        d = st.divergence
        if not d:
            continue
        if d.found:
            mod = f", module {d.module}" + (f" ({d.module_class})" if d.module_class else "") if d.module else ""
            err.print(f"[red]first divergence[/] in {_escape(st.name)}: node {_escape(d.node)} "
                      f"({_escape(d.op)}){_escape(mod)}", soft_wrap=True)
            if d.source_line:
                err.print(f"  {d.source_line}", soft_wrap=True, markup=False)
            if d.conditioning and d.conditioning.get("ill_conditioned"):
                err.print(f"  {d.evidence}", soft_wrap=True, markup=False)
        else:
            err.print(f"first divergence in {st.name} not localized: {d.note or ''}", soft_wrap=True,
                      markup=False)


def _target_configs(trt_profile, trt_workspace, trt_timing_cache, trt_plugin, gguf_type, triton_name=None,
                    triton_max_batch=None) -> dict:
    from forgeml.cli.targets import gguf_config, tensorrt_config, triton_config

    configs = {"tensorrt": tensorrt_config(_split(trt_profile), trt_workspace, trt_timing_cache, _split(trt_plugin)),
               "gguf": gguf_config(gguf_type), "triton": triton_config(triton_name, triton_max_batch)}
    return {name: cfg for name, cfg in configs.items() if cfg is not None}


def _print_verdict(out, manifest, fail_on: str, tail: str = "") -> None:
    """The warnings that can decide the exit code, then the verdict word that agrees with it."""
    from forgeml.report.gating import verdict, verdict_reason, warnings

    for w in warnings(manifest):
        out.print(f"[yellow]warning:[/] {_escape(w)}")
    word = verdict(manifest, fail_on)
    reason = verdict_reason(manifest, fail_on)
    text = ("[green]PASS[/]" if word == "PASS" else "[red]FAIL[/]") + (f" ({_escape(reason)})" if reason else "")
    out.print(text + tail)


def _centered(row) -> str:
    from forgeml.report.gating import shown

    cc = row.centered_cosine
    return shown(cc, 4) if cc is not None else "–"


def _cosine(row) -> str:
    from forgeml.report.gating import shown

    return shown(row.cosine, 6) if row.cosine is not None else "–"


def _top1(row) -> str:
    """Top-1 agreement, or for integer outputs (labels) the exact-match fraction the verdict judges them by."""
    from forgeml.report.gating import shown

    if row.top1 is not None:
        return shown(row.top1, 4)
    if row.exact_match is not None:
        return shown(row.exact_match, 4) + " exact"
    return "–"


def _max_abs(row) -> str:
    return f"{row.max_abs:.2e}" if row.max_abs is not None else "–"


def _own_check(stage) -> str:
    """A target's own check, in a few words, for a run that compared no outputs."""
    wc = (stage.metadata or {}).get("weight_check") or {}
    if wc.get("passed"):
        worst = wc.get("worst") or {}
        return (f"{wc.get('tensors')} tensors checked against the source, worst relative RMS "
                f"{worst.get('rel_rmse', 0):.2g} ({worst.get('tensor', '')})")
    return "no check of its own" if not stage.error else "failed"


def _print_summary(result, fail_on: str = "fail") -> None:
    from rich.table import Table

    out = _out()
    m = result.record
    reference = next((st.parity.reference for st in m.checked()),
                     m.source.framework if m.source.framework is not None else "the source")
    table = Table(title="parity vs " + reference, title_justify="left")
    for col in ("stage", "output", "max abs", "cosine", "centered", "top-1", "verdict"):
        table.add_column(col)
    for stage, parity in result.parity.stages:
        for row in parity.rows:
            table.add_row(_escape(f"{stage} ({parity.profile.name})"), _escape(row.output), _max_abs(row),
                          _cosine(row), _centered(row), _top1(row),
                          "[yellow]undecided[/]" if row.verdict == "undecided" else
                          "[green]pass[/]" if row.passed else f"[red]FAIL[/] {_escape(row.problem or '')}")
    if result.parity.stages:
        out.print(table)
    else:  # `parity.outputs` off: say what was checked instead of an empty table
        out.print(f"[yellow]outputs not compared[/] ({in_flags('`parity.outputs`')} off); "
                  + "; ".join(f"{st.name}: {_escape(_own_check(st))}" for st in m.stages if st.kind == "target"))
    for st in m.stages:
        for note in st.notes:
            out.print(f"[dim]{_escape(st.name)}: {_escape(note)}[/]")
    if m.plan and m.plan.skipped:
        out.print(f"[dim]plan: {_escape(m.plan.reason)}; skipped: {_escape(', '.join(m.plan.skipped))}[/]")
    source = m.source
    if source.fallback:
        out.print(f"[yellow]note:[/] exported by the fallback route {_escape(source.route.split(' ')[0])}: "
                  f"{_escape(source.fallback)}")
    for name, why in result.errors.items():
        out.print(f"[red]target {name} failed:[/] {_escape(in_flags(why))}")
    _print_verdict(out, m, fail_on, f"  {len(result.artifacts)} artifact(s) in {result.out_dir}  "
                   f"(manifest.json, report.md, report.html)")


@app.command()
def inspect(file: Path = typer.Argument(..., help=".onnx, .safetensors, .tflite or .gguf file"),
            as_json: bool = typer.Option(False, "--json", help="print the raw JSON")):
    """Signature, ops, parameter count, bytes and metadata of an artifact."""
    from forgeml.pipeline.inspection import inspect_file

    info = inspect_file(file)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out = _out()
    out.print(f"[bold]{info['path']}[/]  {info['format']}  {info['bytes']:,} bytes")
    skip = {"path", "format", "bytes", "tensor_table", "inputs", "outputs", "ops", "metadata",
            "signatures", "mapping", "forgeml_io"}
    for k, v in info.items():
        if k not in skip:
            out.print(f"  {k}: {v}")
    for kind in ("inputs", "outputs"):
        for t in info.get(kind, []):
            out.print(f"  {kind[:-1]:6} {t['name']}: {t['shape']} {t['dtype']}")
    for key, sig in (info.get("signatures") or {}).items():
        for kind in ("inputs", "outputs"):
            for name, t in sig[kind].items():
                out.print(f"  signature {key} {kind[:-1]:6} {name} → tensor {t['name']!r}: {t['shape']} {t['dtype']}")
    for line in info.get("mapping") or []:
        out.print(f"  map {line}")
    if info.get("ops"):
        out.print("  ops: " + ", ".join(f"{op}×{n}" for op, n in info["ops"].items()))
    for k, v in (info.get("metadata") or {}).items():
        text = v if len(str(v)) < 120 else str(v)[:117] + "…"
        out.print(f"  meta {k}: {text}")
    for t in (info.get("tensor_table") or [])[:50]:
        out.print(f"  {t['name']:50} {t['dtype']:5} {t['shape']}")
    if len(info.get("tensor_table") or []) > 50:
        out.print(f"  … {len(info['tensor_table']) - 50} more tensors (--json for all)")


@app.command()
def parity(
    ctx: typer.Context,
    a: str = typer.Argument(..., help="the reference: a model file, an artifact, zoo:NAME or python:module:function"),
    b: str = typer.Argument(..., help="the candidate judged against A (same kinds as A)"),
    inputs: Optional[List[Path]] = typer.Option(None, "--inputs", help=".npz keyed by input name; one batch per "
                                                "file (default: A's example plus seeded random batches)"),
    model: Optional[str] = typer.Option(None, "--model", help="the model a .safetensors side's weights belong to"),
    profile: Optional[str] = typer.Option(None, "--profile", help="tolerance profile fp32|fp16|int8|int4 "
                                          "(default: B's recorded precision, else fp32)"),
    batches: int = typer.Option(3, "--batches", min=0, help="seeded random batches besides the example"),
    atol: Optional[float] = typer.Option(None, "--atol"),
    rtol: Optional[float] = typer.Option(None, "--rtol"),
    report: Optional[Path] = typer.Option(None, "--report", help="write the report here (.html or .md)"),
    fail_on: str = typer.Option("fail", "--fail-on", help="exit 1 on: fail | warn"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary on stdout"),
):
    """Compare any two models or artifacts on the same inputs, with convert's metrics and exit codes."""
    from forgeml.pipeline.compare import compare
    from forgeml.report.gating import exit_code, summary

    _check_fail_on(fail_on)
    from forgeml.parity.inputs import read_npz

    user = [read_npz(p) for p in inputs or []]
    with _err().status(f"running {a} and {b} …"):
        m = compare(a, b, inputs=user, model=model, profile=profile, batches=batches, atol=atol, rtol=rtol,
                    command=" ".join(shlex.quote(x) for x in ["forgeml", *(ctx.obj or {}).get("argv", sys.argv[1:])]))
    if report:
        from forgeml.report.html import save_report

        save_report(m, report)
    code = exit_code(m, fail_on)
    if as_json:
        print(json.dumps(summary(m, fail_on=fail_on), indent=2))
        raise typer.Exit(code)
    from rich.table import Table

    st = m.stages[0]
    par = st.parity
    table = Table(title=f"{b} vs {a} ({par.profile})", title_justify="left")
    for col in ("output", "max abs", "cosine", "centered", "top-1", "verdict"):
        table.add_column(col)
    for row in par.rows:
        table.add_row(row.output, _max_abs(row), _cosine(row), _centered(row), _top1(row),
                      "[green]pass[/]" if row.passed else f"[red]FAIL[/] {_escape(row.problem or '')}")
    out = _out()
    out.print(table)
    for note in st.notes:
        out.print(f"note: {note}")
    a_ms, b_ms = st.reference_latency.median_ms, st.latency.median_ms
    out.print(f"A: {m.source.framework} {'–' if a_ms is None else f'{a_ms:.3g} ms'} · "
              f"B: {st.runtime} {'–' if b_ms is None else f'{b_ms:.3g} ms'} (median, example batch)")
    _print_verdict(out, m, fail_on)
    raise typer.Exit(code)


@report_app.command("diff")
def report_diff(old: Path = typer.Argument(..., help="the earlier release's manifest.json (or its directory)"),
                new: Path = typer.Argument(..., help="this release's manifest.json (or its directory)"),
                as_json: bool = typer.Option(False, "--json", help="print the diff as JSON")):
    """Can NEW replace OLD? A semver verdict (MAJOR: contract changed, MINOR: outputs moved beyond the
    parity profile on shared inputs, PATCH: within tolerance) and what changed. Exit 0 PATCH, 3 MINOR,
    4 MAJOR, 1 when NEW's own run failed parity, 2 bad input."""
    from forgeml.pipeline.release import release_diff
    from forgeml.report.diff import EXIT, render_md, render_release

    with _err().status("rerunning both releases' artifacts …"):
        d = release_diff(old, new)
    if as_json:
        print(json.dumps(d, indent=2, default=str))
    else:
        print(render_release(d) + render_md(d, str(old), str(new)), end="")
    raise typer.Exit(EXIT["NEW_FAILS"] if d["verdict"]["new"] != "PASS" else EXIT[d["semver"]])


@app.command()
def reproduce(manifest: Path = typer.Argument(..., help="OUT/manifest.json of the run to repeat"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="where to rerun (default: OUT-reproduced)"),
              force: bool = typer.Option(False, "--force", help="replace the rerun directory if it exists"),
              as_json: bool = typer.Option(False, "--json", help="print the result as JSON")):
    """Rerun a recorded conversion into a new directory and check its artifacts are byte-identical."""
    from forgeml.pipeline.reproduce import reproduce as run_again

    with _err().status("rerunning …"):
        r = run_again(manifest, out, force=force)
    if as_json:
        print(json.dumps(r, indent=2))
    else:
        o = _out()
        o.print(f"reran from the {r['how']} into {r['new_dir']}")
        for name, a in r["artifacts"].items():
            extra = f" (max abs {a['max_abs']:.3g} between the two files' outputs)" if "max_abs" in a else ""
            o.print(f"  {name:12} {a['status']}{extra}{' — ' + a['note'] if a.get('note') else ''}")
        if "calibration" in r:
            o.print(f"  calibration data: {'same' if r['calibration']['same'] else 'DIFFERENT'} (by sha256)")
        o.print("[green]REPRODUCED[/]" if r["ok"] else "[red]NOT REPRODUCED[/]")
    raise typer.Exit(0 if r["ok"] else 1)
@app.command("check-trt")
def check_trt(file: Path = typer.Argument(..., help=".onnx model to check"),
              tensorrt: str = typer.Option("10.1", "--tensorrt", help="support table: 10.1 or 8.5"),
              plugin: Optional[List[str]] = typer.Option(None, "--plugin", help="custom ops you have TensorRT "
                                                         "plugins for (comma-separated or repeated)"),
              as_json: bool = typer.Option(False, "--json", help="print the raw JSON")):
    """Static TensorRT readiness (no GPU, no TensorRT needed). Exit 0 ready, 1 blocking findings, 2 bad input."""
    from rich.markup import escape

    from forgeml.targets.tensorrt.readiness import check_file

    result = check_file(file, tensorrt=tensorrt, plugins=tuple(_split(plugin)))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        out = _out()
        colour = {"error": "red", "warning": "yellow", "info": "dim"}
        for f in result.findings:
            out.print(f"[{colour[f.severity]}]{escape(f.line())}[/]", soft_wrap=True)
        out.print(("[green]" if result.ready else "[red]") + escape(f"{file}: {result.summary()}") + "[/]  "
                  f"(support table: {escape(result.source)})", soft_wrap=True)
    raise typer.Exit(0 if result.ready else 1)


@app.command()
def scan(file: Path = typer.Argument(..., help="a pickle-based file: .pkl, .joblib, .pt/.pth/.bin, .npy, .npz"),
         as_json: bool = typer.Option(False, "--json", help="print the raw JSON")):
    """List the globals a pickle would import, without loading it. Exit 0 when every global is on the
    allow-list, 1 when any is not (or part of the file cannot be read as pickle opcodes), 2 for bad input."""
    from rich.markup import escape

    from forgeml.security.pickle_scan import scan_file

    report = scan_file(file)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        raise typer.Exit(0 if report.clean else 1)
    out = _out()
    out.print(f"[bold]{escape(str(report.path))}[/]  {report.format}  {report.pickles} pickle(s), "
              f"{len(report.globals)} global(s)")
    for g in report.globals:
        color = {"safe": "green", "unknown": "yellow", "dangerous": "red"}[g.verdict]
        where = f"{g.member}@{g.offset}" if g.member else f"offset {g.offset}"
        out.print(f"  [{color}]{g.verdict:9}[/] " + escape(f"{g.module}.{g.name}  ({g.opcode} at {where})"))
    for problem in report.problems:
        out.print("  [red]unreadable[/] " + escape(problem))
    out.print("[green]clean[/]: only allow-listed globals" if report.clean else
              f"[red]UNSAFE[/]: {len(report.flagged)} global(s) outside the allow-list"
              + (f", {len(report.problems)} unreadable part(s)" if report.problems else ""))
    raise typer.Exit(0 if report.clean else 1)


@app.command()
def batch(
    jobs: Path = typer.Argument(..., help="YAML job file: models × targets × quantize modes (README: Batch)"),
    cluster: str = typer.Option("local", "--cluster", help="local: Ray started inside this process | auto: the "
                                "cluster RAY_ADDRESS names (local when unset) | none: no Ray, one job at a time | "
                                "ray://HOST:PORT"),
    out: Path = typer.Option(Path("batch-out"), "--out", "-o", help="output directory, reachable from every node"),
    resume: bool = typer.Option(False, "--resume", help="keep the jobs of an earlier run into OUT that passed "
                                "with unchanged inputs; run the rest"),
    force: bool = typer.Option(False, "--force", help="discard an earlier run into OUT"),
    max_parallel: Optional[int] = typer.Option(None, "--max-parallel", min=1, help="at most N jobs at once "
                                               "(default: as many as the cluster's resources allow)"),
    as_json: bool = typer.Option(False, "--json", help="print summary.json's counts and verdicts on stdout"),
):
    """Run many conversions as Ray tasks and summarize them. Exit 0 all passed, 1 a parity failure (or a job
    lost with its worker), 2 a bad job file, or a job that could not be converted or scheduled."""
    from rich.markup import escape

    from forgeml.batch import BatchOptions, run_batch
    from forgeml.cli.batch import BatchBar, job_line, table
    from forgeml.cli.progress import bar_wanted

    err = _err()
    bar = BatchBar() if bar_wanted(as_json) else None
    status = err.status("starting …") if bar is not None else None

    def on_event(e):
        if e.kind == "done" and not as_json:
            err.print(job_line(e.record), soft_wrap=True)
        elif e.kind == "retry" and not as_json:
            err.print(f"  [yellow]↻[/] {escape(e.message)}", soft_wrap=True)
        if status is not None:
            status.update(escape(bar.render(e)))

    if status is not None:
        status.start()
    try:
        result = run_batch(jobs, out, BatchOptions(cluster=cluster, max_parallel=max_parallel, resume=resume,
                                                   force=force), on_event=on_event)
    except KeyboardInterrupt:
        raise _Interrupted(f"finished jobs are recorded in {out}/records; --resume continues") from None
    finally:
        if status is not None:
            status.stop()
    s = result.summary
    if as_json:
        print(json.dumps({k: s[k] for k in ("exit_code", "counts", "out_dir", "seconds")} |
                         {"jobs": {j["id"]: j["verdict"] for j in s["jobs"]}}, indent=2))
    else:
        o = _out()
        o.print(table(result))
        shown = ", ".join(f"{n} {v}" for v, n in s["counts"].items() if n)
        o.print(f"{len(result.records)} jobs: {shown} in {s['seconds']:.1f} s on {s['cluster']['kind']} Ray "
                f"({len(s['cluster']['nodes'])} node(s))  "
                f"({escape(str(result.out_dir))}/summary.html, summary.md, summary.json, junit.xml)")
    raise typer.Exit(result.exit_code)


@zoo_app.command("list")
def zoo_list():
    """The built-in models."""
    from models_zoo import ZOO

    out = _out()
    for m in ZOO.values():
        out.print(f"zoo:{m.name:14} {m.kind:10} {m.description}")


@zoo_app.command("export")
def zoo_export(name: str = typer.Argument(..., help="zoo model name, e.g. cnn"),
               out: Path = typer.Option(None, "--out", "-o", help="file stem (default: ./NAME)"),
               force: bool = typer.Option(False, "--force")):
    """Write a zoo model in its framework's own format (torch: .pt2) plus NAME.inputs.npz."""
    from forgeml.errors import InputError, require
    from models_zoo import ZOO
    from models_zoo.export import SAVERS, export, output_paths

    if name not in ZOO:
        raise InputError(f"unknown zoo model {name!r}; `forgeml zoo list` shows: {', '.join(ZOO)}")
    kind = ZOO[name].kind
    if kind not in SAVERS:
        raise InputError(f"zoo:{name} is a {kind} model; `zoo export` writes {', '.join(SAVERS)} models")
    from forgeml.pipeline.sources import FRAMEWORKS

    require(*FRAMEWORKS.get(kind, (kind, kind)))
    stem = out or Path(name)
    existing = [str(p) for p in output_paths(name, stem) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise InputError(f"{' and '.join(existing)} already exists; pass --force to replace it")
    path, npz = export(name, stem, force=True)
    _out().print(f"wrote {path} and {npz}")


# The library names options by their API path in backticks (errors.py); the CLI shows its flags.
FLAGS = {
    "`quantize.mode`": "--quantize", "`quantize.calibration`": "--calib",
    "`quantize.synthetic_calibration`": "--calib-synthetic", "`quantize.max_cosine_drop`": "--max-cosine-drop",
    "`quantize.min_top1`": "--min-top1", "`quantize.min_centered_cosine`": "--min-centered-cosine",
    "`quantize.calibrate_method`": "--calib-method", "`options.trust_pickle`": "--trust-pickle", "`options.input_specs`": "--input",
    "`options.opset`": "--opset", "`options.signature`": "--signature", "`parity.inputs`": "--inputs",
    "`parity.batches`": "--parity-batches", "`parity.outputs`": "--no-output-parity", "`parity.localize`": "--localize",
    "`parity.generate_tokens`": "--gen-tokens", "`parity.held_out_samples`": "--held-out-samples",
    "`parity.fail_on`": "--fail-on", "`options.kv_cache`": "--no-kv-cache", "`force`": "--force",
    "`targets`": "--to", "`model`": "--model", "`TensorRTConfig.profiles`": "--trt-profile",
    "`TensorRTConfig.workspace_mib`": "--trt-workspace", "`TensorRTConfig.plugins`": "--trt-plugin",
    "`gguf Config.type`": "--gguf-type", "`TritonConfig.model_name`": "--triton-name",
    "`TritonConfig.max_batch_size`": "--triton-max-batch", "`passes`": "--passes",
    "`mlflow.tracking_uri`": "--mlflow", "`mlflow.experiment`": "--mlflow-experiment",
    "`mlflow.register`": "--register", "`mlflow.alias`": "--alias", "`publish_mlflow`": "forgeml publish",
    "`BatchOptions.cluster`": "--cluster", "`BatchOptions.max_parallel`": "--max-parallel",
    "`BatchOptions.resume`": "--resume", "`BatchOptions.force`": "--force",
}


def in_flags(message: str) -> str:
    """A library message in the CLI's terms: each option's API path becomes the flag that sets it."""
    for term, flag in FLAGS.items():
        message = message.replace(term, flag)
    return message


class _Interrupted(Exception):
    """Ctrl-C carried past typer, which would turn a KeyboardInterrupt into a silent Exit(130)."""


def _interrupted(detail: str) -> None:
    """Ctrl-C: one line; pipeline.run's errors.Interrupted says what was (not) written."""
    print(f"forgeml: interrupted{'; ' + detail if detail else ''}", file=sys.stderr, flush=True)
    # A Ctrl-C that landed inside a C extension's PyRun_* call (onnxsim, torch) leaves CPython's
    # "unhandled KeyboardInterrupt" flag set, and the interpreter would then kill itself with SIGINT at
    # exit instead of returning 130. Any later PyRun_* call that completes clears that flag.
    import ctypes

    ctypes.pythonapi.PyRun_SimpleString(b"pass")


def _bare_mlflow(args: list[str]) -> list[str]:
    """``--mlflow`` takes an optional URI: given bare (last, or before another option) it means MLflow's
    default, written as an empty value so the option parser sees one."""
    out = []
    for i, a in enumerate(args):
        out.append(a)
        if a == "--mlflow" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: ForgeErrors become one line and their exit code; --debug shows the traceback."""
    from forgeml.errors import ForgeError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = _bare_mlflow([a for a in args if a != "--debug"])
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        rv = app(args=args, prog_name="forgeml", standalone_mode=False, obj={"argv": args})
        if rv == 130:  # typer turns Ctrl-C outside convert's run into Exit(130), which click returns
            _interrupted("")
        return rv if isinstance(rv, int) else 0  # click returns typer.Exit's code here
    except typer.Exit as e:
        return e.exit_code
    except _Interrupted as e:
        _interrupted(str(e))
        return 130
    except ForgeError as e:
        if debug:
            import traceback

            traceback.print_exc()
        _err().print(f"[red]forgeml: error:[/] {_escape(in_flags(str(e)))}", soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt as e:
        _interrupted(str(e))
        return 130
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        # typer vendors its own click, so match the exception's shape rather than its class.
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 1
        raise

if __name__ == "__main__":
    sys.exit(main())
