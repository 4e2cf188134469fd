"""The package layout's rules: one-way dependencies, no import cycle, a pure engine."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cai", "daad_tools", "cards")
HEAVY = ("datasets", "huggingface_hub", "fiftyone", "torch", "click", "diffusers", "transformers", "pyarrow",
         "pandas", "PIL", "onnxruntime", "rembg")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known) -> set[str]:
    """Modules of ours that ``name`` imports anywhere (module level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph(level) -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        src = level(name)
        for dep in _imports(name, path, mods):
            dst = level(dep)
            if dst != src:
                graph.setdefault(src, set()).add(dst)
        graph.setdefault(src, set())
    return graph


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package(name: str) -> str:
    """Subpackages collapse to one node (``cai.engine.scale`` -> ``cai.engine``, ``cai.cdm.train`` ->
    ``cai.cdm``); the top-level modules of a package (``cai.build``, ``daad_tools.qa``) stay nodes."""
    parts = name.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and (REPO / parts[0] / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return name


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("level", ["package", "module"])
def test_no_import_cycle(level):
    graph = _graph(_package if level == "package" else (lambda n: n))
    assert _cycles(graph) == []


def test_cai_never_imports_daad_tools():
    mods = _modules()
    offenders = sorted(f"{name} -> {dep}" for name, path in mods.items() if name.startswith("cai")
                       for dep in _imports(name, path, mods) if dep.startswith("daad_tools"))
    assert offenders == []


def test_engine_imports_only_engine_modules():
    mods = _modules()
    offenders = sorted(f"{name} -> {dep}" for name, path in mods.items() if name.startswith("cai.engine")
                       for dep in _imports(name, path, mods) if not dep.startswith("cai.engine") and dep != "cai")
    assert offenders == []


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {m.split(".")[0] for m in json.loads(out)}


def test_engine_import_is_light():
    loaded = _loaded_after("import cai.engine, cai.engine.synthesizer, cai.engine.foreground, cai.engine.poisson")
    assert "numpy" in loaded and "cv2" in loaded  # the check can see what was imported
    assert sorted(set(HEAVY) & loaded) == []


def test_import_cai_is_light():
    assert sorted({"torch", "fiftyone", "diffusers", "transformers", "datasets", "daad_tools"}
                  & _loaded_after("import cai")) == []
