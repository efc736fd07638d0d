"""Every tutorial runs top to bottom in fast mode (so none of them rots)."""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

TUTORIALS = sorted((REPO / "tutorials").glob("[0-9]*.py"))


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    env = dict(os.environ, MINICNNRNN_TUTORIAL_FAST="1", MPLBACKEND="Agg", MINICNNRNN_TUTORIAL_OUT=str(tmp_path))
    # The package is importable even without `pip install -e .`.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{script.name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    # Each ends with a picture to look at, saved where MINICNNRNN_TUTORIAL_OUT says.
    assert list(tmp_path.rglob("*.png")), f"{script.name} saved no plot under MINICNNRNN_TUTORIAL_OUT"


def test_tutorials_exist():
    names = [p.name for p in TUTORIALS]
    assert {"01_lstm_eq1.py", "02_label_embedding_tied_softmax.py", "07_beam_search.py"} <= set(names)


def one_page_functions(**constants):
    """The functions of tutorial 00 without running its script part (data, training).

    The tutorial is a script whose name starts with a digit, so it cannot be imported; its
    function definitions are compiled on their own, with the module constants they read
    (K, H, START, ...) given here at sizes small enough to check every entry.
    """
    tree = ast.parse((REPO / "tutorials" / "00_cnn_rnn_on_one_page.py").read_text())
    defs = ast.Module([node for node in tree.body if isinstance(node, ast.FunctionDef)], type_ignores=[])
    namespace = {"np": np, **constants}
    exec(compile(defs, "00_cnn_rnn_on_one_page.py", "exec"), namespace)
    return namespace


def test_one_page_gradients_match_finite_differences():
    K, D, E, H = 5, 6, 4, 3
    page = one_page_functions(K=K, D=D, E=E, H=H, END=K, START=K + 1, rank=np.arange(K))
    rng = np.random.default_rng(7)
    params = {name: value.astype(np.float64) for name, value in page["init"](rng).items()}
    Y = (rng.random((4, K)) < 0.5).astype(np.uint8)
    Y[0] = 0  # an image with no label: a path of END alone
    I = rng.standard_normal((4, D))
    paths = page["make_paths"](Y)
    loss, grads = page["loss_and_grads"](params, I, *paths)
    assert loss > 0 and set(grads) == set(params)
    checked = 0
    for name, value in params.items():
        for index in np.ndindex(value.shape):
            num = page["numerical_grad"](lambda p: page["loss_and_grads"](p, I, *paths)[0], params, name, index)
            assert abs(num - grads[name][index]) <= 1e-7 * max(1.0, abs(num)), (name, index, num, grads[name][index])
            checked += 1
    assert checked == sum(v.size for v in params.values())
    # The check can fail: a wrong gradient is caught.
    grads["U_r"][0, 0] += 1e-3
    num = page["numerical_grad"](lambda p: page["loss_and_grads"](p, I, *paths)[0], params, "U_r", (0, 0))
    assert abs(num - grads["U_r"][0, 0]) > 1e-7
