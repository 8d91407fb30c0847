"""The rules the package's import graph keeps (docs/design.md, "Layout"). Every import counts: at
module top, inside functions, and under TYPE_CHECKING, because each is a dependency a reader follows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "forgeml"

# Each floor and what it may import besides itself (its own folder). Floors not named here (the CLI)
# may import anything.
_BASE = {"forgeml.errors", "forgeml.records"}
ALLOWED = {
    "forgeml": _BASE | {"forgeml.api", "forgeml.version"},
    "forgeml.errors": set(),
    "forgeml.records": set(),
    "forgeml.version": set(),
    "forgeml.options": _BASE | {"forgeml.ir"},
    "forgeml.fileio": _BASE,
    "forgeml.ir": _BASE,
    "forgeml.formats": _BASE | {"forgeml.fileio"},
    "forgeml.security": _BASE,
    "forgeml.runtime": _BASE | {"forgeml.ir", "forgeml.formats"},
    "forgeml.parity": _BASE | {"forgeml.ir", "forgeml.formats", "forgeml.runtime", "forgeml.security"},
    "forgeml.passes": _BASE | {"forgeml.ir", "forgeml.formats", "forgeml.runtime", "forgeml.parity"},
    "forgeml.converters": _BASE | {"forgeml.ir", "forgeml.fileio", "forgeml.formats", "forgeml.security",
                                   "forgeml.runtime", "forgeml.parity"},
    "forgeml.targets": _BASE | {"forgeml.ir", "forgeml.fileio", "forgeml.formats", "forgeml.security",
                                "forgeml.runtime", "forgeml.parity"},
    "forgeml.manifest": _BASE | {"forgeml.ir", "forgeml.parity"},
    "forgeml.report": _BASE | {"forgeml.ir", "forgeml.fileio", "forgeml.parity", "forgeml.manifest"},
    # publish: a committed package to a registry (MLflow); it runs artifacts through their targets
    "forgeml.publish": _BASE | {"forgeml.ir", "forgeml.fileio", "forgeml.formats", "forgeml.runtime",
                                "forgeml.targets", "forgeml.report", "forgeml.options", "forgeml.manifest"},
    "forgeml.pipeline": _BASE | {"forgeml.ir", "forgeml.fileio", "forgeml.formats", "forgeml.security",
                                 "forgeml.runtime", "forgeml.parity", "forgeml.passes", "forgeml.converters",
                                 "forgeml.targets", "forgeml.report", "forgeml.options", "forgeml.version",
                                 "forgeml.manifest", "forgeml.publish"},
    "forgeml.api": _BASE | {"forgeml.ir", "forgeml.fileio", "forgeml.formats", "forgeml.security",
                            "forgeml.runtime", "forgeml.parity", "forgeml.passes", "forgeml.converters",
                            "forgeml.targets", "forgeml.report", "forgeml.pipeline", "forgeml.options",
                            "forgeml.version", "forgeml.manifest", "forgeml.publish"},
    # batch runs forgeml.api's convert as jobs; nothing but the CLI imports it
    "forgeml.batch": _BASE | {"forgeml.api", "forgeml.options", "forgeml.converters", "forgeml.parity",
                              "forgeml.passes", "forgeml.targets", "forgeml.report", "forgeml.runtime",
                              "forgeml.fileio", "forgeml.version", "forgeml.manifest"},
}
UI_LIBRARIES = {"typer", "rich", "click"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool, modules: frozenset = frozenset()) -> set[str]:
    """Every module named by an import statement anywhere in ``source``."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from pkg import submodule` depends on the submodule; `from mod import name` on the module
            subs = {f"{name}.{a.name}" for a in node.names} & modules
            out.update(subs or {name})
            if len(subs) < len(node.names):
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    g = {}
    for name, path in modules.items():
        named = imports_of(path.read_text(), name, path.name == "__init__.py", frozenset(modules))
        g[name] = {m for m in named if m in modules and m != name} | {m for m in named if m.split(".")[0] in UI_LIBRARIES}
    return g


def floor_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        floor = floor_of(mod)
        for dep in deps:
            if dep.split(".")[0] in UI_LIBRARIES:
                if floor != "forgeml.cli":
                    bad.append(f"{mod} imports {dep}: only forgeml.cli may use a terminal UI library")
                continue
            dep_floor = floor_of(dep)
            if dep_floor == floor or floor not in ALLOWED:
                continue
            if dep_floor not in ALLOWED[floor] and dep not in ALLOWED[floor]:
                bad.append(f"{mod} imports {dep}: {floor} may import only {sorted(ALLOWED[floor]) or 'nothing'}")
        if floor == "forgeml.targets":  # a target package sees only its own folder and the contract
            own = ".".join(mod.split(".")[:3])
            for dep in deps:
                if floor_of(dep) == "forgeml.targets" and dep != "forgeml.targets.base" \
                        and not dep.startswith(own) and mod != "forgeml.targets":
                    bad.append(f"{mod} imports {dep}: one target never imports another")
    return sorted(bad)


def publish_importers(g: dict[str, set[str]]) -> list[str]:
    """Modules outside pipeline, api, cli and publish itself that import publish: none may."""
    allowed = {"forgeml.pipeline", "forgeml.api", "forgeml.cli", "forgeml.publish"}
    return sorted(f"{mod} imports {dep}" for mod, deps in g.items() for dep in deps
                  if floor_of(dep) == "forgeml.publish" and floor_of(mod) not in allowed)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_floors_import_only_downwards():
    assert violations(graph()) == []


def test_only_pipeline_api_and_cli_import_publish():
    assert publish_importers(graph()) == []
    assert publish_importers({"forgeml.targets.onnx.target": {"forgeml.publish.mlflow"}}) != []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_rules_can_fail():
    """The checker finds what it is meant to find, on made-up modules."""
    fake = {
        "forgeml.ir": {"forgeml.runtime.ort"},
        "forgeml.runtime.ort": {"forgeml.ir"},
        "forgeml.converters.x": {"forgeml.targets.onnx.target"},
        "forgeml.targets.onnx.target": {"forgeml.targets.gguf.write", "forgeml.converters.hf"},
        "forgeml.targets.gguf.write": set(),
        "forgeml.converters.hf": set(),
        "forgeml.parity.measure": {"rich.table"},
    }
    found = violations(fake)
    assert any(v.startswith("forgeml.ir imports forgeml.runtime.ort") for v in found)
    assert any(v.startswith("forgeml.converters.x imports forgeml.targets") for v in found)
    assert any("one target never imports another" in v for v in found)
    assert any(v.startswith("forgeml.targets.onnx.target imports forgeml.converters") for v in found)
    assert any("terminal UI library" in v for v in found)
    assert cycles(fake) == [["forgeml.ir", "forgeml.runtime.ort"]]


def test_adding_a_target_is_one_folder_and_one_line():
    """Every target is a package under targets/, and TARGETS is the only place that lists them."""
    from forgeml.targets import TARGETS

    folders = {p.name for p in (PACKAGE / "targets").iterdir() if (p / "__init__.py").is_file()}
    modules = {type(t).__module__.split(".")[2] for t in TARGETS.values()}
    assert modules == folders
    table_text = (PACKAGE / "targets" / "__init__.py").read_text()
    for folder in folders:
        others = [p for p in PACKAGE.rglob("*.py") if f"targets.{folder}" in p.read_text()
                  and "targets" not in p.relative_to(PACKAGE).parts[:1]]
        # outside targets/, a target is named only by the CLI's per-target flags and the table
        assert all(p.parts[-2] == "cli" for p in others), (folder, others)
    assert table_text.count("Target(),") == len(TARGETS)


@pytest.mark.parametrize("module", ["forgeml", "forgeml.cli"])
def test_the_face_imports_no_framework(module):
    """``import forgeml`` and the CLI's help stay light: no torch, tensorflow, onnxruntime at import."""
    import subprocess
    import sys

    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'tensorflow', 'onnxruntime', 'sklearn', "
            f"'transformers', 'onnx2tf') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
