"""Loaders on the real benchmark files in ../shared/data (skipped when absent)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from minicnnrnn import datasets
from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets import nuswide

# Images per class (non-difficult objects) in the original VOC 2007 split files,
# and images where the class appears only as "difficult".
VOC_POSITIVES = {
    "train": [238, 243, 330, 181, 244, 186, 713, 337, 445, 141, 200, 421, 287, 245, 2008, 245, 96, 229, 261, 256],
    "test": [204, 239, 282, 172, 212, 174, 721, 322, 417, 127, 190, 418, 274, 222, 2007, 224, 97, 223, 259, 229],
}
VOC_DIFFICULT_ONLY = {
    "train": [2, 12, 3, 7, 18, 11, 48, 7, 127, 5, 63, 9, 7, 4, 87, 28, 1, 143, 2, 23],
    "test": [1, 11, 7, 4, 28, 9, 54, 10, 128, 0, 57, 15, 5, 11, 90, 30, 1, 132, 0, 26],
}


def test_voc2007_split_sizes_and_counts(shared_data):
    ds = datasets.load("voc2007", shared_data / "voc2007", check_images=False)  # no pixels shipped
    assert len(ds.splits["train"]) == 5011 and len(ds.splits["test"]) == 4952
    for split in ("train", "test"):
        s = ds.splits[split]
        assert s.labels.sum(axis=0).tolist() == VOC_POSITIVES[split]
        assert s.ignore.sum(axis=0).tolist() == VOC_DIFFICULT_ONLY[split]
        assert not np.any(s.labels.astype(bool) & s.ignore)
    assert ds.splits["train"].paths[0].endswith("JPEGImages/000005.jpg")


def test_voc2007_without_images_is_a_clear_error(shared_data):
    with pytest.raises(UserError, match="none of the"):
        datasets.load("voc2007", shared_data / "voc2007")


def test_nuswide_sizes_and_corrupt_row(shared_data):
    names, labelled, notes = nuswide.read_concept_labels(str(shared_data / "nus_wide"))
    assert "Labels_lake_Train.txt: line 78373 (image row 78372): value '-1130179'" in notes[0]
    assert len(names) == 81 and names[0] == "airport" and "lake" in names
    train, train_ignore = labelled["train"]
    test, test_ignore = labelled["test"]
    assert train.shape == (161789, 81) and test.shape == (107859, 81) and train.dtype == np.uint8
    lake = names.index("lake")
    assert train_ignore.sum() == 1 and train_ignore[78372, lake] and train[78372, lake] == 0
    assert not test_ignore.any() and len(notes) == 1
    assert set(np.unique(train)) <= {0, 1}
    with pytest.raises(UserError, match="line 78373"):
        nuswide.read_concept_labels(str(shared_data / "nus_wide"), corrupt="error")


def test_coco_tiny(shared_data):
    root = shared_data / "coco_tiny"
    ds = datasets.load("coco2014", root)  # only the 2017 release is there: used and noted
    assert any("2017" in n for n in ds.notes)
    assert len(ds.label_names) == 80 and ds.label_names[:3] == ["person", "bicycle", "car"]
    for split, coco_split in (("train", "train"), ("test", "val")):
        s = ds.splits[split]
        assert len(s) == 80 and s.labels.dtype == np.uint8 and s.labels.max() == 1
        assert 3.5 < s.labels.sum(axis=1).mean() < 4.2
        assert s.labels.sum(axis=0).min() >= 1  # one image per category at least
        data = json.loads((root / "annotations" / f"instances_{coco_split}2017.json").read_text())
        pairs = {(a["image_id"], a["category_id"]) for a in data["annotations"]}
        assert s.labels.sum() == len(pairs) < len(data["annotations"])  # once per image, not per instance


def _run(*args):
    """Run ``python -m minicnnrnn.<args>`` from the repo root; return stdout, fail with its stderr."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.slow
def test_coco_tiny_end_to_end_extract_train_predict(shared_data, tmp_path):
    """Real photos through the whole pipeline with the shipped small CNN (issue 7, item 4)."""
    root, feats, run = shared_data / "coco_tiny", tmp_path / "feats", tmp_path / "run"
    _run("minicnnrnn.extract", "--dataset", "coco2014", "--root", str(root), "--out", str(feats))
    assert np.load(feats / "features.npy", mmap_mode="r").shape[0] == 160
    out = _run(
        "minicnnrnn.train",
        "--dataset",
        "coco2014",
        "--root",
        str(root),
        "--features",
        str(feats),
        "--epochs",
        "2",
        "--out",
        str(run),
    )
    metrics_json = json.loads((run / "metrics.json").read_text())["metrics"]
    assert list(metrics_json) == ["C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "MAP@10", "mAP"]
    assert all(0 <= v <= 100 for v in metrics_json.values()) and "O-F1" in out
    photos = sorted((root / "val2017").glob("*.jpg"))[:2]
    printed = json.loads(
        _run("minicnnrnn.predict", "--checkpoint", str(run / "checkpoint.npz"), "--json", *map(str, photos))
    )
    names = [c["name"] for c in json.loads((root / "annotations" / "instances_val2017.json").read_text())["categories"]]
    assert [os.path.realpath(p["image"]) for p in printed] == [os.path.realpath(p) for p in photos]
    for p in printed:
        assert set(p["labels"]) <= set(names) and list(p["scores"]) == names
