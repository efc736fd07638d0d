"""The finite-difference helpers and ``python -m minicnnrnn.gradcheck``."""

import subprocess
import sys

import numpy as np
import pytest

from minicnnrnn import gradcheck
from minicnnrnn.core import numgrad
from minicnnrnn.gradcheck import cases_rnn
from minicnnrnn.rnn import embedding

CASES = gradcheck.all_cases()


def test_numerical_gradient_of_known_function():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    before = x.copy()
    g = numgrad.numerical_gradient(lambda z: float((z**3).sum()), x)
    np.testing.assert_allclose(g, 3 * before**2, rtol=1e-9)
    np.testing.assert_array_equal(x, before)  # restored after perturbing


def test_rel_error():
    a = np.array([1.0, -2.0, 0.0])
    assert numgrad.rel_error(a, a) == 0.0
    assert numgrad.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    np.testing.assert_allclose(numgrad.rel_error(a, a * 1.01), 0.01 / 2.01)
    # A tiny entry is judged on the array's scale: FD noise there is not a failure ...
    assert numgrad.rel_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) < 1e-9
    # ... but a wrong sign on a small, resolvable entry is.
    assert numgrad.rel_error(np.array([1.0, 0.01]), np.array([1.0, -0.01])) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name, case", CASES, ids=[n for n, _ in CASES])
def test_every_case_passes(name, case, seed):
    """Every finite-difference case of the project (the one place they are written), two seeds."""
    assert case(np.random.default_rng(seed)) < numgrad.TOLERANCE


def test_cli_passes_and_prints_a_row_per_case(capsys):
    assert gradcheck.main(["--only", "lstm"]) == 0
    out = capsys.readouterr().out
    for name, _ in cases_rnn.CASES:
        if "lstm" in name:
            assert name in out
    assert "PASS" in out


def test_cli_fails_when_a_backward_is_broken(monkeypatch, capsys):
    right = embedding.embed_backward
    monkeypatch.setattr(embedding, "embed_backward", lambda dw, cache: {"U_l": 0.9 * right(dw, cache)["U_l"]})
    assert gradcheck.main(["--only", "end to end"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "path loss end to end (relu)" in out


def test_cli_rows_cover_every_room():
    names = [name for name, _ in CASES]
    assert names[: len(cases_rnn.CASES)] == [n for n, _ in cases_rnn.CASES]
    assert len(set(names)) == len(names)
    for room in gradcheck.ROOMS:
        assert room.CASES and set(n for n, _ in room.CASES) <= set(names)


def test_command_line_errors():
    run = subprocess.run(
        [sys.executable, "-m", "minicnnrnn.gradcheck", "--only", "no such case"], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["error: --only: no case name contains 'no such case'"]


def test_negative_seed_is_a_one_line_error(capsys):
    # numpy.random.default_rng(-1) raises ValueError, which used to escape as a traceback.
    with pytest.raises(SystemExit) as info:
        gradcheck.main(["--seed", "-1"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--seed" in lines[0] and lines[0].startswith("error:")
