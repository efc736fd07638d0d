"""Every command example in the README and docs/ names a real command and real options.

A command line in the docs (``python -m minicnnrnn.<module> ...`` or ``minicnnrnn <sub> ...``)
goes stale when a module moves or an option is renamed. This test reads every such
line, asks the command for its ``--help``, and checks that the module exists and that
every ``--option`` the example uses is one the command knows.
"""

import functools
import pathlib
import re
import subprocess
import sys

import pytest

from minicnnrnn import __main__ as console

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "tutorials" / "README.md", *sorted((REPO / "docs").glob("*.md"))]

COMMAND = re.compile(r"(?:python -m (minicnnrnn(?:\.[a-z_]+)+)|\bminicnnrnn ([a-z]+))((?:[ \t]+[^\s`|#]+)*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def examples():
    """(file:line, module, options used) for every command line in the docs."""
    found = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in COMMAND.finditer(line):
                module, sub, rest = match.groups()
                if sub is not None:
                    if sub not in console.COMMANDS:
                        continue  # prose such as "minicnnrnn ships ..."
                    module = console.COMMANDS[sub][0]
                where = f"{path.relative_to(REPO)}:{number}"
                found.append((where, module, tuple(OPTION.findall(rest))))
    return found


EXAMPLES = examples()


@functools.lru_cache(maxsize=None)
def help_text(module):
    run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    return run.returncode, run.stdout + run.stderr


def test_the_docs_have_examples():
    assert len(EXAMPLES) > 20
    assert any(module == "minicnnrnn.train" and "--compare" in opts for _, module, opts in EXAMPLES)


@pytest.mark.parametrize("where, module, options", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_command_example_is_current(where, module, options):
    code, text = help_text(module)
    assert code == 0, f"{where}: `python -m {module} --help` failed: {text.strip()[-300:]}"
    known = set(OPTION.findall(text))
    unknown = [o for o in options if o not in known]
    assert not unknown, f"{where}: {module} has no option {', '.join(unknown)}"


# The docs' Python snippets (```python blocks): every import runs, and every attribute they
# use of an imported module exists (``beam_search.beam_search``), so a moved module or a
# renamed function fails here. The snippets themselves need data (a checkpoint, images),
# so they are not run whole.
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)
ATTRIBUTE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.([A-Za-z_]\w*)")


def snippets():
    """(file:line, code) of every ```python block in the docs."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in SNIPPET.finditer(text):
            where = f"{path.relative_to(REPO)}:{text[: match.start()].count(chr(10)) + 1}"
            found.append((where, match.group(1)))
    return found


SNIPPETS = snippets()


def test_the_docs_have_python_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("where, code", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_python_snippet_imports_what_it_uses(where, code):
    imports = "\n".join(line for line in code.splitlines() if line.startswith(("import ", "from ")))
    names = {}
    try:
        exec(imports, names)  # noqa: S102 - the docs' own import lines
    except ImportError as exc:
        pytest.fail(f"{where}: {exc}")
    for name, attribute in ATTRIBUTE.findall(code):
        module = names.get(name)
        if module is not None and type(module).__name__ == "module" and module.__name__.startswith("minicnnrnn"):
            assert hasattr(module, attribute), f"{where}: {module.__name__} has no {attribute}"
