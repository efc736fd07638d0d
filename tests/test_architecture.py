"""The package's layout keeps its promises: one room per part of the paper.

* every module imports on its own;
* no import cycles between the package's modules;
* ``rnn/`` (§3) and ``cnn/`` (§4) never import each other: they meet only through
  the image feature ``I``;
* no import of a package module hides inside a function (a way to dodge a cycle);
* the shared rooms (``core/``, ``layers/``) do not reach up into the model rooms;
* a command (a top-level ``minicnnrnn/<name>.py``) never imports another command: what
  two commands share lives in a room (e.g. ``features/`` for ``extract`` and ``scale_out``);
* ``paths/`` (label paths and their searches) knows no model: it imports only ``core/``,
  ``layers/`` and itself, never ``rnn/``, ``cnn/``, ``baselines/``, ``training/`` or a
  command; ``rnn/`` takes only the token alphabet (``paths/tokens.py``) from it;
* no source file (package, tutorials, benchmarks, tests) is longer than about 400 lines;
* the package root imports none of its modules at import time: its lazy re-exports
  (``minicnnrnn.LAZY``, PEP 562) resolve on first use, and their targets import without cycles.

The import graph is read from the source with :mod:`ast`, so the test sees exactly
the ``import`` statements a reader sees.
"""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "minicnnrnn"
MAX_LINES = 400  # "no file over ~400 lines"

# Rooms below the model rooms: they must never import from the rooms above them.
FOUNDATION = {"core": set(), "layers": {"core"}}


def module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(node, module, is_package):
    """Absolute names that an Import/ImportFrom node refers to (modules where they are modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    names = []
    for alias in node.names:
        full = f"{prefix}.{alias.name}"
        names.append(full if full in MODULES else prefix)
    return names


def imports_of(module):
    """(module-level imports, imports inside functions) of the package's own modules."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    top, nested = set(), set()
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _resolve(node, module, path.name == "__init__.py"):
                if name == "minicnnrnn" or name.startswith("minicnnrnn."):
                    (nested if id(node) in inside else top).add(name)
    return top, nested


GRAPH = {m: imports_of(m)[0] & set(MODULES) for m in MODULES}


def room_of(module):
    """'rnn' for minicnnrnn.rnn.lstm, None for a top-level command such as minicnnrnn.train."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_import_cycles():
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_rnn_and_cnn_never_import_each_other():
    crossings = [
        f"{m} -> {n}" for m, targets in GRAPH.items() for n in targets if {room_of(m), room_of(n)} == {"rnn", "cnn"}
    ]
    assert not crossings, crossings


def test_foundation_rooms_do_not_import_upwards():
    bad = []
    for m, targets in GRAPH.items():
        allowed = FOUNDATION.get(room_of(m))
        if allowed is None:
            continue
        for n in targets:
            if n != "minicnnrnn" and room_of(n) not in allowed | {room_of(m)}:  # the root holds only __version__
                bad.append(f"{m} -> {n}")
    assert not bad, bad


def is_command(module):
    """minicnnrnn.train, minicnnrnn.extract, ...: a top-level module other than the package
    itself and ``__main__`` (which dispatches to the commands by name)."""
    parts = module.split(".")
    return len(parts) == 2 and room_of(module) is None and parts[1] != "__main__"


def commands_importing_commands(graph):
    return [f"{m} -> {n}" for m, targets in graph.items() if is_command(m) for n in targets if is_command(n)]


def test_no_command_imports_another_command():
    assert commands_importing_commands(GRAPH) == []


def test_the_command_check_sees_a_command_importing_a_command():
    assert is_command("minicnnrnn.train") and is_command("minicnnrnn.scale_out")
    assert not is_command("minicnnrnn") and not is_command("minicnnrnn.__main__")
    assert not is_command("minicnnrnn.features.extraction") and not is_command("minicnnrnn.datasets")
    fake = {"minicnnrnn.scale_out": {"minicnnrnn.extract", "minicnnrnn.features.shards"}}
    assert commands_importing_commands(fake) == ["minicnnrnn.scale_out -> minicnnrnn.extract"]


PATHS_MAY_IMPORT = {"core", "layers", "paths"}


def paths_problems(graph):
    """Edges that break the paths/ rules: paths/ -> a model room or a command, rnn/ -> paths/
    beyond tokens."""
    bad = []
    for m, targets in graph.items():
        for n in targets:
            if room_of(m) == "paths" and n != "minicnnrnn" and room_of(n) not in PATHS_MAY_IMPORT:
                bad.append(f"{m} -> {n}")
            if room_of(m) == "rnn" and room_of(n) == "paths" and n != "minicnnrnn.paths.tokens":
                bad.append(f"{m} -> {n}")
    return bad


def test_paths_know_no_model():
    assert any(room_of(m) == "paths" for m in GRAPH)
    assert paths_problems(GRAPH) == []


def test_the_paths_check_sees_a_model_import():
    fake = {
        "minicnnrnn.paths.beam_search": {"minicnnrnn.rnn.model", "minicnnrnn.core.backend"},
        "minicnnrnn.paths.presence": {"minicnnrnn.train"},
        "minicnnrnn.rnn.model": {"minicnnrnn.paths.tokens", "minicnnrnn.paths.grammar"},
    }
    assert sorted(paths_problems(fake)) == [
        "minicnnrnn.paths.beam_search -> minicnnrnn.rnn.model",
        "minicnnrnn.paths.presence -> minicnnrnn.train",
        "minicnnrnn.rnn.model -> minicnnrnn.paths.grammar",
    ]


def test_the_lazy_re_exports_resolve_and_stay_lazy():
    """``import minicnnrnn`` (every command does) loads none of LAZY's targets; each name
    resolves on first use; a target reaches the root only as any module does (for
    ``__version__``), so no cycle runs through the root at import time."""
    import minicnnrnn

    assert GRAPH["minicnnrnn"] == set(), "the root imports no package module when imported"
    targets = set(minicnnrnn.LAZY.values())
    assert targets <= set(MODULES)
    probe = "import sys, minicnnrnn; print(sorted(m for m in sys.modules if m.startswith('minicnnrnn.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert not any(repr(t) in loaded for t in targets), loaded
    for name, target in minicnnrnn.LAZY.items():
        assert getattr(minicnnrnn, name) is getattr(importlib.import_module(target), name)
        assert name in dir(minicnnrnn)
    with pytest.raises(AttributeError):
        minicnnrnn.NoSuchName  # noqa: B018


def test_no_package_import_inside_a_function():
    hidden = {m: sorted(imports_of(m)[1]) for m in MODULES}
    hidden = {m: v for m, v in hidden.items() if v}
    assert not hidden, hidden


def test_no_source_file_is_too_long():
    roots = [PACKAGE] + [PACKAGE.parent / room for room in ("tutorials", "benchmarks", "tests")]
    long_files = {
        str(p.relative_to(PACKAGE.parent)): n
        for r in roots
        for p in r.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long_files, long_files


def test_the_checker_sees_a_cycle_and_a_crossing():
    """The graph reader is not blind: the real package has these known edges."""
    assert "minicnnrnn.core.backend" in GRAPH["minicnnrnn.rnn.lstm"]
    assert "minicnnrnn.cnn.backbones" in GRAPH["minicnnrnn.features.extraction"]
    assert any(room_of(n) == "layers" for n in GRAPH["minicnnrnn.cnn.vgg"])


# ---------------------------------------------------------------------------
# One layer vocabulary (docs/DESIGN.md, "Layer API"): <layer>_forward beside <layer>_backward.
# ---------------------------------------------------------------------------

LAYER_ROOMS = ("layers", "cnn", "rnn")


def _public_functions(path):
    tree = ast.parse(path.read_text())
    return {
        node.name: node for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }


def vocabulary_problems(path):
    """What breaks the rule in one file: bare forward/backward names, a forward without its
    backward (``<layer>_forward<suffix>`` pairs with ``<layer>_backward<suffix>`` or
    ``<layer>_backward``), a backward whose arguments are not ``(d<out>..., cache, ...)``."""
    functions, problems = _public_functions(path), []
    for name, node in functions.items():
        args = [a.arg for a in node.args.args]
        if name in ("forward", "backward", "step_forward", "step_backward"):
            problems.append(f"{path.name}: bare {name}()")
        if "_forward" in name:
            layer, suffix = name.split("_forward", 1)
            if f"{layer}_backward{suffix}" not in functions and f"{layer}_backward" not in functions:
                problems.append(f"{path.name}: {name}() has no {layer}_backward{suffix}()")
        if "_backward" in name and (not args or not args[0].startswith("d") or "cache" not in args):
            problems.append(f"{path.name}: {name}{tuple(args)} is not (d<out>..., cache)")
    return problems


def test_every_layer_follows_the_forward_backward_vocabulary():
    files = [p for room in LAYER_ROOMS for p in sorted((PACKAGE / room).glob("*.py"))]
    assert len(files) > 15
    problems = [problem for path in files for problem in vocabulary_problems(path)]
    assert problems == []
    # The rule has something to check: every layer room defines forward/backward pairs.
    for room in LAYER_ROOMS:
        names = [n for p in (PACKAGE / room).glob("*.py") for n in _public_functions(p)]
        assert sum("_backward" in n for n in names) >= 1, room


def test_the_vocabulary_check_sees_a_bare_forward_and_a_missing_backward(tmp_path):
    bad = tmp_path / "bad_layer.py"
    bad.write_text(
        "def forward(x):\n    pass\n\n\ndef thing_forward(x):\n    pass\n\n\ndef other_backward(x):\n    pass\n"
    )
    problems = vocabulary_problems(bad)
    assert len(problems) == 3, problems
