"""benchmarks/calibration.py on a tiny setting: over two seeds it prints mean ± sd per kind
of probability and the paired difference CNN-RNN - BCE, whose mAP cell is the mean of the
per-seed differences of the runs' own metrics.json files; a bad --seeds is one line."""

import contextlib
import io
import json
import os
import sys

import pytest
from conftest import markdown_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import calibration as bench  # noqa: E402

TINY = "--epochs 1 --hidden 16 --n-train 200 --n-test 100 --samples 5 --threads 1".split()


def test_two_seeds_give_spreads_and_the_paired_difference(tmp_path):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert bench.main(["--datasets", "builtin", "--seeds", "0-1", "--out", str(tmp_path), *TINY]) == 0
    text = stdout.getvalue()
    bce, rnn = (title for _, title in bench.MODELS)
    means = markdown_rows(text, "Mean ± sd over 2 seeds", bench.COLUMNS)
    assert list(means) == [bce, rnn] and all(" ± " in cell for cell in means[rnn])
    diffs = markdown_rows(text, f"Paired difference to {bce}", bench.COLUMNS)
    assert list(diffs) == [rnn]
    maps = {}
    for seed in (0, 1):
        for name in ("bce", "cnn-rnn"):
            with open(tmp_path / "builtin" / f"seed-{seed}" / name / "metrics.json", encoding="utf-8") as f:
                maps[seed, name] = json.load(f)["metrics"]["mAP"]
    mean_diff = sum(maps[s, "cnn-rnn"] - maps[s, "bce"] for s in (0, 1)) / 2
    assert float(diffs[rnn][-1].split(" ± ")[0]) == pytest.approx(mean_diff, abs=0.051)
    assert (tmp_path / "reliability_builtin.png").exists()


def test_bad_seeds_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--seeds", "4-1"])
    assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err
