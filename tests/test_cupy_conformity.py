"""Every ``xp.<name>`` (and ``xp.<name>.<attr>``, e.g. ``xp.add.at``) the package uses exists in
CuPy's real namespace. Needs only ``import cupy`` (no GPU): .ci/run installs cupy-cuda12x."""

import ast
import inspect
import pathlib

import pytest
from conftest import REPO

PACKAGE = REPO / "minicnnrnn"


def xp_uses(root=PACKAGE):
    """{dotted name after ``xp.``: [file:line, ...]} for every ``xp.a`` / ``xp.a.b`` in the package."""
    found = {}
    for path in sorted(pathlib.Path(root).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "xp":
                dotted = ".".join(reversed(chain))
                found.setdefault(dotted, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    # two levels at most: xp.add.at; xp.a.b.c is checked as xp.a.b
    names = {}
    for dotted, where in found.items():
        names.setdefault(".".join(dotted.split(".")[:2]), []).extend(where)
    return names


def test_the_scan_finds_the_package_uses():
    names = xp_uses()
    assert {"zeros", "maximum", "argsort", "unique", "take_along_axis"} <= set(names) and len(names) > 30


def test_every_xp_name_exists_in_cupy():
    try:
        import cupy
    except Exception as exc:  # not installed, or a broken install
        pytest.skip(f"CuPy cannot be imported here ({type(exc).__name__}: {exc}); pip install cupy-cuda12x")
    missing = []
    for dotted, where in sorted(xp_uses().items()):
        obj = cupy
        for part in dotted.split("."):
            if not hasattr(obj, part):
                missing.append(f"cupy.{dotted} (used at {', '.join(where[:3])})")
                break
            obj = getattr(obj, part)
    assert not missing, "CuPy lacks: " + "; ".join(missing)


def test_keywords_the_package_passes_exist_in_cupy():
    """``xp.f(..., kw=...)`` with a keyword CuPy's Python-level signature does not accept."""
    try:
        import cupy
    except Exception as exc:
        pytest.skip(f"CuPy cannot be imported here ({type(exc).__name__}: {exc})")
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = getattr(node, "func", None)
            if not (isinstance(node, ast.Call) and isinstance(func, ast.Attribute)):
                continue
            if not (isinstance(func.value, ast.Name) and func.value.id == "xp"):
                continue
            target = getattr(cupy, func.attr, None)
            try:
                sig = inspect.signature(target)
            except (TypeError, ValueError):
                continue  # a compiled ufunc or kernel: no signature to check
            params = sig.parameters.values()
            if any(p.kind is p.VAR_KEYWORD for p in params):
                continue
            accepted = {p.name for p in params}
            for kw in node.keywords:
                if kw.arg is not None and kw.arg not in accepted:
                    bad.append(f"xp.{func.attr}({kw.arg}=...) at {path.relative_to(REPO)}:{node.lineno}")
    assert not bad, "CuPy does not accept: " + "; ".join(bad)
