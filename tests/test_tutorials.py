"""Every tutorial runs top to bottom in fast mode (so none of them rots)."""

import os
import subprocess
import sys

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
