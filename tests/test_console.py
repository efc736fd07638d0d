"""The ``minicnnrnn`` console command and ``python -m minicnnrnn``: the same commands behind one name."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import minicnnrnn
from minicnnrnn import __main__ as console


def run(args, exe=None):
    cmd = (exe or [sys.executable, "-m", "minicnnrnn"]) + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_overview_lists_every_command():
    out = run([])
    assert out.returncode == 0
    for name in console.COMMANDS:
        assert f"  {name} " in out.stdout


def test_version_everywhere():
    assert run(["--version"]).stdout.strip() == f"minicnnrnn {minicnnrnn.__version__}"
    sub = run(["gradcheck", "--version"])
    assert sub.returncode == 0 and sub.stdout.strip() == f"minicnnrnn {minicnnrnn.__version__}"


@pytest.mark.parametrize("name", sorted(console.COMMANDS))
def test_each_subcommand_has_help_and_one_line_errors(name):
    ok = run([name, "--help"])
    assert ok.returncode == 0 and "--backend" in ok.stdout
    bad = run([name, "--no-such-option"])
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error:")


def test_unknown_command_is_one_line():
    out = run(["trian"])
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "trian" in out.stderr


def test_subcommand_runs_the_module(capsys):
    with pytest.raises(SystemExit) as stop:
        console.main(["gradcheck", "--only", "tied"])
    assert stop.value.code == 0
    assert "PASS" in capsys.readouterr().out


def test_installed_console_script():
    exe = shutil.which("minicnnrnn")
    if exe is None:
        pytest.skip("the minicnnrnn console script is not on PATH (package not installed with pip)")
    out = run(["--version"], exe=[exe])
    assert out.stdout.strip() == f"minicnnrnn {minicnnrnn.__version__}"


def test_the_suite_uses_a_temporary_cache():
    cache = pathlib.Path(os.environ["MINICNNRNN_CACHE"])
    assert "minicnnrnn-test-cache-" in cache.name
    assert pathlib.Path.home() / ".cache" / "minicnnrnn" != cache
