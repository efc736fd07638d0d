"""benchmarks/bench_learning.py on a tiny setting: its tables have the rows and columns it
promises, its paired differences are the mean of the per-seed differences of the runs'
own metrics.json files, the chosen recurrent model is the one with the best validation
score, and a missing iaprtc12 file is one line."""

import contextlib
import io
import json
import os
import sys

import numpy as np
import pytest
from conftest import markdown_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_learning  # noqa: E402

TINY = "--epochs 1 --hidden 16 --embed 8 --n-train 200 --n-test 100 --samples 5 --threads 1".split()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bench"))
    argv = ["--datasets", "builtin", "iaprtc12", "--iapr", os.path.join(out, "absent.npz"), "--seeds", "0-1"]
    argv += ["--methods", "bce", "cnn-rnn", "--orders", "freq", "rare", "--out", out] + TINY
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert bench_learning.main(argv) == 0
    return out, stdout.getvalue()


def _metrics(out, seed, run):
    with open(os.path.join(out, "builtin", str(seed), run, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)["metrics"]


def test_table_has_every_row_and_both_statistics(tiny_run):
    out, text = tiny_run
    means = markdown_rows(text, "Mean ± sd over 2 seeds", bench_learning.COLUMNS)
    expected = ["Binary cross-entropy", "CNN-RNN freq", "CNN-RNN rare", bench_learning.CHOSEN, bench_learning.MATCHED]
    assert list(means)[:5] == expected
    assert all(" ± " in cell for cell in means["CNN-RNN freq"])  # two seeds: a spread in every column
    diffs = markdown_rows(text, "Paired difference to Binary cross-entropy", bench_learning.COLUMNS)
    assert "Binary cross-entropy" not in diffs and "CNN-RNN freq" in diffs
    assert "Goal on builtin" in text and ("**reached**" in text or "**not reached**" in text)
    assert f"iaprtc12: no data at {os.path.join(out, 'absent.npz')}, skipped" in text
    assert os.path.exists(os.path.join(out, "builtin", "compare.json"))


@pytest.mark.parametrize("column", ["O-F1", "C-F1", "mAP"])
def test_paired_difference_is_the_mean_of_the_per_seed_differences(tiny_run, column):
    out, text = tiny_run
    d = [_metrics(out, s, "cnn-rnn-freq")[column] - _metrics(out, s, "bce-freq")[column] for s in (0, 1)]
    with open(os.path.join(out, "builtin", "compare.json"), encoding="utf-8") as f:
        cell = json.load(f)["summary"]["CNN-RNN freq"][column]
    assert cell["diff"] == pytest.approx(np.mean(d))
    assert cell["se"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(2))
    shown = markdown_rows(text, "Paired difference to Binary cross-entropy", bench_learning.COLUMNS)["CNN-RNN freq"]
    assert shown[bench_learning.COLUMNS.index(column)].startswith(f"{np.mean(d):+.1f} ± ")


def test_chosen_row_is_the_recurrent_run_with_the_best_validation_score(tiny_run):
    out, _ = tiny_run
    with open(os.path.join(out, "builtin", "compare.json"), encoding="utf-8") as f:
        per_seed = json.load(f)["per_seed"]
    for rows in per_seed.values():
        candidates = [rows["CNN-RNN freq"], rows["CNN-RNN rare"]]
        best = max(candidates, key=lambda r: r["val"])  # the first of ties, as the benchmark
        assert rows[bench_learning.CHOSEN] == best


def test_seeds_accept_ranges_and_lists():
    assert bench_learning.seed_list(["0-2"]) == [0, 1, 2]
    assert bench_learning.seed_list(["0", "1", "4"]) == [0, 1, 4]
    with pytest.raises(SystemExit):
        bench_learning.main(["--seeds", "3-1"])
