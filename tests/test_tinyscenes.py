"""Tiny Scenes: determinism, label statistics, exclusions, the disk cache and the stats command."""

import hashlib
import os

import numpy as np
import pytest

from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import cache, scenes, stats

NAMES = scenes.LABEL_NAMES


@pytest.fixture(scope="module")
def sample():
    """1500 pictures of one seed (about 2 s), shared by the statistics tests."""
    return scenes.generate(1500, seed=12345, size=32, workers=1)


def _has(labels, name):
    return labels[:, NAMES.index(name)] > 0


def test_same_seed_gives_byte_identical_arrays():
    a_img, a_lab = scenes.generate(40, seed=7)
    b_img, b_lab = scenes.generate(40, seed=7)
    assert a_img.dtype == np.uint8 and a_img.shape == (40, 64, 64, 3)
    assert a_lab.dtype == np.uint8 and a_lab.shape == (40, len(NAMES))
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    c_img, _ = scenes.generate(40, seed=8)
    assert not np.array_equal(a_img, c_img)


def test_picture_i_does_not_depend_on_n_or_workers():
    img, lab = scenes.generate(2 * scenes.CHUNK + 10, seed=3, size=24, workers=2)
    head_img, head_lab = scenes.generate(5, seed=3, size=24, workers=1)
    assert np.array_equal(img[:5], head_img) and np.array_equal(lab[:5], head_lab)
    one_img, one_lab = scenes.generate(len(img), seed=3, size=24, workers=1)
    assert np.array_equal(img, one_img) and np.array_equal(lab, one_lab)


def test_size_is_configurable():
    img, _ = scenes.generate(3, seed=1, size=48)
    assert img.shape == (3, 48, 48, 3)


def test_label_counts_and_long_tail(sample):
    _, labels = sample
    card = stats.cardinality(labels)
    assert card.min() >= 1 and card.max() <= scenes.MAX_LABELS
    assert 2.7 <= card.mean() <= 3.5
    freq = np.sort(stats.label_frequencies(labels))
    assert freq[0] > 0.01  # every label occurs
    assert freq[-1] / freq[0] > 5  # long tail: the commonest is >5x the rarest
    assert freq[-1] < 0.5


def test_exclusions_and_implications_hold(sample):
    _, y = sample
    never = [
        ("sun", "moon"),
        ("sun", "star"),
        ("car", "water"),
        ("table", "road"),
        ("cup", "boat"),
        ("lamp", "sun"),
        ("cow", "water"),
    ]
    for a, b in never:
        assert not np.any(_has(y, a) & _has(y, b)), f"{a} and {b} occur together"
    implies = [("boat", "water"), ("cup", "table"), ("hat", "person"), ("traffic_light", "road"), ("car", "road")]
    for child, parent in implies:
        assert _has(y, child).any() and np.all(_has(y, parent)[_has(y, child)]), f"{child} without {parent}"
    # higher order: person and water together only with a boat
    together = _has(y, "person") & _has(y, "water")
    assert together.any() and np.all(_has(y, "boat")[together])


def test_colour_histograms_do_not_solve_it(sample):
    """A linear classifier on colour histograms stays far from perfect (mAP well under 80%)."""
    from minicnnrnn.evaluation import metrics

    images, labels = sample
    scores = stats.ridge_scores(
        stats.colour_histograms(images[:1000]), labels[:1000], stats.colour_histograms(images[1000:])
    )
    value = metrics.mean_average_precision(scores, labels[1000:])
    assert 0.3 < value < 0.75


def test_cache_miss_then_hit(tmp_path):
    img, lab = scenes.load("test", 12, size=32, cache_dir=tmp_path)
    key = scenes.dataset_key("test", 12, 32)
    path = cache.path_for(key, tmp_path)
    assert os.path.exists(path)
    # a hit returns the stored arrays: prove it by planting different (but valid) ones
    cache.save(key, tmp_path, images=img[::-1].copy(), labels=lab[::-1].copy())
    hit_img, _ = scenes.load("test", 12, size=32, cache_dir=tmp_path)
    assert np.array_equal(hit_img, img[::-1])
    assert np.array_equal(img, scenes.generate(12, scenes.SPLIT_SEEDS["test"], 32)[0])


def test_splits_are_independent(tmp_path):
    a, _ = scenes.load("train", 8, size=32, cache_dir=tmp_path)
    b, _ = scenes.load("test", 8, size=32, cache_dir=tmp_path)
    c, _ = scenes.load("pretrain", 8, size=32, cache_dir=tmp_path)
    assert not np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(b, c)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "tamper"])
def test_corrupted_cache_is_detected_and_regenerated(tmp_path, damage, capsys):
    img, lab = scenes.load("train", 10, size=32, cache_dir=tmp_path)
    path = cache.path_for(scenes.dataset_key("train", 10, 32), tmp_path)
    if damage == "garbage":
        raw = bytearray(open(path, "rb").read())
        raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
        open(path, "wb").write(bytes(raw))
    elif damage == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    else:  # a readable file whose arrays no longer match the stored checksum
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["labels"] = 1 - arrays["labels"]
        np.savez(path, **arrays)
    img2, lab2 = scenes.load("train", 10, size=32, cache_dir=tmp_path)
    assert np.array_equal(img, img2) and np.array_equal(lab, lab2)
    assert "regenerating" in capsys.readouterr().err
    assert cache.load(scenes.dataset_key("train", 10, 32), ("images", "labels"), tmp_path) is not None


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    assert cache.cache_root() == str(tmp_path / "c")
    assert cache.cache_root(tmp_path / "d") == str(tmp_path / "d")


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="split"):
        scenes.load("validation", 5, cache_dir=tmp_path)
    with pytest.raises(UserError, match="n:"):
        scenes.generate(0, seed=1)


def test_stats_command_prints_and_plots(tmp_path, capsys):
    from minicnnrnn.tinyscenes.stats import main

    assert (
        main(
            [
                "--n",
                "60",
                "--size",
                "32",
                "--samples",
                "6",
                "--out",
                str(tmp_path / "out"),
                "--cache-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "label frequencies" in text and "labels per image: mean" in text and "sun/moon" in text
    for name in ("tinyscenes_cooccurrence.png", "tinyscenes_samples.png"):
        with open(tmp_path / "out" / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [["--n", "0"], ["--size", "8"], ["--samples", "-2"]])
def test_stats_command_names_a_bad_argument(tmp_path, capsys, bad):
    from minicnnrnn.core import cli
    from minicnnrnn.tinyscenes.stats import main

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, ["--n", "5", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out")] + bad)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and err.startswith("error: ") and bad[0] in err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_or_cache_is_a_user_error(tmp_path):
    from minicnnrnn.tinyscenes.stats import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match=f"--out {blocker}: cannot write the pictures"):
        main(["--n", "5", "--size", "16", "--cache-dir", str(tmp_path), "--out", str(blocker)])
    with pytest.raises(UserError, match="cannot write the cache file.*--cache-dir") as info:
        scenes.load("test", 3, size=16, cache_dir=blocker)
    assert str(info.value).startswith(str(blocker))


def test_conditional_cooccurrence_matches_counting():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=np.uint8)
    P = stats.conditional_cooccurrence(y)
    assert P[0, 1] == pytest.approx(2 / 3) and P[1, 0] == pytest.approx(2 / 3)
    assert P[2, 1] == 1.0 and P[0, 2] == pytest.approx(1 / 3) and np.allclose(np.diag(P), 1)


def test_identical_across_processes_with_different_hash_seeds():
    """No draw may depend on set/dict iteration order, which PYTHONHASHSEED changes between runs."""
    import subprocess
    import sys

    code = (
        "import hashlib; from minicnnrnn.tinyscenes import scenes as ts; "
        "a, b = ts.generate(300, 5, size=24); print(hashlib.sha256(a.tobytes() + b.tobytes()).hexdigest())"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(
            os.environ,
            PYTHONHASHSEED=hash_seed,
            PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
        )
        digests.add(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    assert len(digests) == 1


def test_object_maps_leave_the_pictures_unchanged_and_match_the_labels():
    images, labels = scenes.generate(40, scenes.SPLIT_SEEDS["test"], 64)
    again, labels2, owners, areas = scenes.generate(40, scenes.SPLIT_SEEDS["test"], 64, objects=True)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels2)
    assert owners.shape == (40, 64, 64) and areas.shape == (40, scenes.K) and owners.max() <= scenes.K
    assert ((areas > 0) <= (labels == 1)).all()  # an absent label is never drawn
    assert (areas[labels == 1] > 0).mean() > 0.95  # nearly every present label is visible
    for n in range(40):  # the owner map (most common of the 2x2 sub-pixels) agrees with the areas
        shown = np.bincount(owners[n].ravel(), minlength=scenes.K + 1)[1:] / owners[n].size
        np.testing.assert_allclose(shown, areas[n], atol=0.02)
    road = scenes.INDEX["road"]
    assert areas[labels[:, road] == 1, road].min() > 0.1  # the road is a big object


def test_first_test_pictures_are_the_ones_drawn_before_object_maps():
    images, labels = scenes.generate(300, scenes.SPLIT_SEEDS["test"], 64)
    # recorded before the object maps existed (commit 36e1b0e), see docs/builtin_dataset.md
    assert hashlib.sha256(images.tobytes()).hexdigest() == (
        "ce93d1739b341100117095198f475cc4590d98b8c7461039304dc1d4b0e94813"
    )
    assert hashlib.sha256(labels.tobytes()).hexdigest() == (
        "3d5e481fe93aa924f3620c8cb7d7faab64c8fcdecbaa529d9da89bb9351302e0"
    )
