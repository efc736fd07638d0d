"""Comparisons over seeds: mean ± sd, paired differences and their standard errors, the
seed lists of ``train --seeds``, and the table ``train --compare --seeds`` prints."""

import json
import math

import numpy as np
import pytest

from minicnnrnn.evaluation import stats
from minicnnrnn.training import compare


def test_mean_sd_uses_n_minus_1_and_ignores_nan():
    mean, sd = stats.mean_sd([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and sd == pytest.approx(1.0)
    assert math.isnan(stats.mean_sd([5.0])[1])  # one seed: no spread


def test_paired_difference_cancels_what_the_seed_moves_in_both():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 5, 8)  # large, shared by both methods
    a, b = 60 + seed_effect + 1.0 + rng.normal(0, 0.1, 8), 60 + seed_effect
    diff, se = stats.paired_difference(a, b)
    assert diff == pytest.approx(1.0, abs=0.15) and se < 0.1
    assert stats.is_clear(diff, se)
    # unpaired, the same numbers are a tie: the spread of either mean dwarfs the difference
    assert stats.mean_sd(a)[1] > 2 * abs(diff)
    d = a - b
    assert se == pytest.approx(np.std(d, ddof=1) / math.sqrt(8))


def test_paired_difference_drops_a_seed_missing_on_either_side():
    diff, se = stats.paired_difference([1.0, float("nan"), 3.0, 5.0], [0.0, 0.0, 1.0, 2.0])
    assert diff == pytest.approx(2.0) and se == pytest.approx(1.0 / math.sqrt(3))
    with pytest.raises(ValueError, match="3 values against 2"):
        stats.paired_difference([1, 2, 3], [1, 2])


def test_is_clear_needs_more_than_two_standard_errors():
    assert not stats.is_clear(2.0, 1.0) and stats.is_clear(2.01, 1.0) and stats.is_clear(-3.0, 1.0)
    assert not stats.is_clear(5.0, float("nan"))


@pytest.mark.parametrize(
    "text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,1,2", [0, 1, 2]), ("3", [3]), ("0-1,7", [0, 1, 7])]
)
def test_parse_seeds(text, seeds):
    assert stats.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "4-2", "1,1", "-3", "1-"])
def test_parse_seeds_refuses(text):
    with pytest.raises(ValueError, match="seeds"):
        stats.parse_seeds(text)


def _rows(bce, rnn):
    keys = compare.COLUMNS
    return {"Binary cross-entropy": dict.fromkeys(keys, bce), "CNN-RNN": dict.fromkeys(keys, rnn)}


def test_markdown_marks_only_differences_beyond_two_standard_errors():
    clear = {s: _rows(50.0 + s, 52.0 + s + 0.1 * (s % 2)) for s in range(5)}  # +2 every seed, tiny spread
    text = compare.markdown(clear)
    assert "5 seeds (0-4)" in text
    diff_row = [line for line in text.splitlines() if line.startswith("| CNN-RNN") and "+" in line][0]
    assert diff_row.count("*") == len(compare.COLUMNS) and "+2.0 ± 0.0" in diff_row
    noisy = {s: _rows(50.0, 50.0 + (3 if s % 2 else -2)) for s in range(5)}  # +1 on average, sd 2.7
    diff_row = [line for line in compare.markdown(noisy).splitlines() if line.startswith("| CNN-RNN") and "+" in line]
    assert diff_row and "*" not in diff_row[0]


def test_save_writes_every_seed(tmp_path):
    per_seed = {s: _rows(50.0 + s, 51.0 + s) for s in (3, 4)}
    compare.save(str(tmp_path), per_seed, compare.markdown(per_seed))
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["seeds"] == [3, 4] and saved["per_seed"]["4"]["CNN-RNN"]["mAP"] == 55.0
    assert saved["summary"]["CNN-RNN"]["mAP"]["diff"] == pytest.approx(1.0)
    assert (tmp_path / "compare.md").read_text().startswith("Mean ± sd over 2 seeds (3, 4)")
