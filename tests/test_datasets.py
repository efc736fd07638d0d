"""Dataset loaders on tiny fixtures written here in each benchmark's own file format."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from minicnnrnn import datasets
from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets import nuswide, voc2007


def _write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


# ---------------------------------------------------------------- VOC 2007

# image id -> [(class, difficult)]
VOC_OBJECTS = {
    "trainval": {
        "000005": [("chair", 0), ("chair", 1), ("person", 0)],
        "000007": [("car", 0)],
        "000009": [("dog", 1), ("person", 0), ("person", 0)],
    },
    "test": {"000001": [("dog", 0), ("person", 1)], "000002": [("train", 0)]},
}


def _voc_xml(objects):
    objs = "".join(
        f"<object><name>{c}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>1</xmin></bndbox></object>"
        for c, d in objects
    )
    return f"<annotation><folder>VOC2007</folder>{objs}</annotation>"


def _voc_value(objects, cls):
    flags = [d for c, d in objects if c == cls]
    return -1 if not flags else (1 if 0 in flags else 0)


@pytest.fixture
def voc_root(tmp_path):
    year = tmp_path / "VOCdevkit" / "VOC2007"
    for split, images in VOC_OBJECTS.items():
        _write(year / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in images))
        for cls in voc2007.CLASSES:
            lines = "".join(f"{i} {_voc_value(objs, cls):2d}\n" for i, objs in images.items())
            _write(year / "ImageSets" / "Main" / f"{cls}_{split}.txt", lines)
        for i, objs in images.items():
            _write(year / "Annotations" / f"{i}.xml", _voc_xml(objs))
            _write(year / "JPEGImages" / f"{i}.jpg", b"\xff\xd8", "wb")
    return tmp_path


def test_voc_labels_and_difficult_ignore(voc_root):
    ds = datasets.load("voc2007", voc_root / "VOCdevkit", check_xml=True)
    assert ds.label_names == voc2007.CLASSES and set(ds.splits) == {"train", "test"}
    train = ds.splits["train"]
    c = {name: voc2007.CLASSES.index(name) for name in ("chair", "person", "car", "dog", "train")}
    assert train.paths[0].endswith(os.path.join("VOC2007", "JPEGImages", "000005.jpg"))
    assert train.labels.dtype == np.uint8 and train.labels.shape == (3, 20)
    # chair has one non-difficult object in 000005 -> positive
    assert train.labels[0, c["chair"]] == 1 and not train.ignore[0, c["chair"]]
    # dog only difficult in 000009 -> neither positive nor negative
    assert train.labels[2, c["dog"]] == 0 and train.ignore[2, c["dog"]]
    assert train.labels.sum() == 4 and train.ignore.sum() == 1
    test = ds.splits["test"]
    assert test.ignore[0, c["person"]] and test.labels[1, c["train"]] == 1


@pytest.mark.parametrize("sub", ["", "VOCdevkit", os.path.join("VOCdevkit", "VOC2007")])
def test_voc_root_may_be_any_level(voc_root, sub):
    assert len(datasets.load("voc2007", voc_root / sub).splits["test"]) == 2


def test_voc_xml_disagreement_and_bad_value(voc_root):
    year = voc_root / "VOCdevkit" / "VOC2007"
    _write(year / "Annotations" / "000007.xml", _voc_xml([("cat", 0)]))
    with pytest.raises(UserError, match="000007.xml"):
        voc2007.load(str(voc_root), check_xml=True)
    _write(year / "ImageSets" / "Main" / "cow_test.txt", "000001 -1\n000002 7\n")
    with pytest.raises(UserError, match=r"cow_test.txt: line 2"):
        voc2007.load(str(voc_root))


def test_voc_xml_with_an_unknown_class_is_a_user_error(voc_root):
    _write(voc_root / "VOCdevkit" / "VOC2007" / "Annotations" / "000007.xml", _voc_xml([("truck", 0)]))
    with pytest.raises(UserError, match="000007.xml: object class 'truck' is not one of the 20 VOC classes"):
        voc2007.load(str(voc_root), check_xml=True)


def test_voc_missing_image_is_dropped_and_reported(voc_root, caplog):
    os.remove(voc_root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000007.jpg")
    ds = datasets.load("voc2007", voc_root)
    train = ds.splits["train"]
    assert len(train) == 2 and train.labels.shape == (2, 20) and train.ignore.shape == (2, 20)
    assert len(ds.notes) == 1 and ds.notes[0].startswith("train: 1 of 3 images are missing")
    assert caplog.records[-1].getMessage() == "dataset note: " + ds.notes[0]  # shown to the user too


def test_load_unknown_name_and_missing_root(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        datasets.load("imagenet", tmp_path)
    with pytest.raises(UserError, match="not found"):
        datasets.load("voc2007", tmp_path / "nothing")
    with pytest.raises(UserError, match="VOC2007/ImageSets/Main"):
        datasets.load("voc2007", tmp_path)


# ---------------------------------------------------------------- COCO

COCO_CATEGORIES = [{"id": 7, "name": "train"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def _coco_json(images, annotations):
    return json.dumps(
        {
            "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 4, "width": 4} for i in images],
            "annotations": [
                {"id": n, "image_id": i, "category_id": c, "iscrowd": crowd, "bbox": [0, 0, 1, 1]}
                for n, (i, c, crowd) in enumerate(annotations)
            ],
            "categories": COCO_CATEGORIES,
        }
    )


@pytest.fixture
def coco_root(tmp_path):
    # image 10: three persons and a car; 11: a crowd of persons; 12: nothing.
    train = _coco_json([12, 10, 11], [(10, 1, 0), (10, 1, 0), (10, 3, 0), (10, 1, 0), (11, 1, 1)])
    val = _coco_json([20, 21], [(20, 7, 0), (21, 3, 0), (21, 7, 0)])
    for year in ("2014",):
        _write(tmp_path / "annotations" / f"instances_train{year}.json", train)
        _write(tmp_path / "annotations" / f"instances_val{year}.json", val)
        for name, ids in (("train", [10, 11, 12]), ("val", [20, 21])):
            for i in ids:
                _write(tmp_path / f"{name}{year}" / f"{i:012d}.jpg", b"", "wb")
    return tmp_path


def test_coco_category_order_once_per_image_and_unlabelled_kept(coco_root):
    ds = datasets.load("coco2014", coco_root)
    assert ds.notes == ["train: 1 of 3 images have no annotation; kept as all-zero rows"]
    assert ds.label_names == ["person", "car", "train"]  # by category id 1, 3, 7
    train = ds.splits["train"]
    assert [os.path.basename(p) for p in train.paths] == [f"{i:012d}.jpg" for i in (10, 11, 12)]
    np.testing.assert_array_equal(train.labels, [[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert train.ignore is None
    np.testing.assert_array_equal(ds.splits["test"].labels, [[0, 0, 1], [0, 1, 1]])


def test_coco_drop_unlabelled_and_other_year(coco_root):
    ds = datasets.load("coco2014", coco_root, unlabelled="drop")
    assert len(ds.splits["train"]) == 2 and any("left out" in n for n in ds.notes)
    for split in ("train", "val"):
        os.rename(
            coco_root / "annotations" / f"instances_{split}2014.json",
            coco_root / "annotations" / f"instances_{split}2017.json",
        )
        os.rename(coco_root / f"{split}2014", coco_root / f"{split}2017")
    ds = datasets.load("coco2014", coco_root)
    assert "using the 2017 release" in ds.notes[0]
    assert ds.splits["test"].paths[0].endswith(os.path.join("val2017", "000000000020.jpg"))
    with pytest.raises(UserError, match="found years: 2017"):
        datasets.load("coco2014", coco_root, year=2014)


def test_coco_bad_file(coco_root):
    _write(coco_root / "annotations" / "instances_val2014.json", '{"images": [')
    with pytest.raises(UserError, match="instances_val2014.json: not a readable"):
        datasets.load("coco2014", coco_root, check_images=False)
    _write(coco_root / "annotations" / "instances_val2014.json", "[]")
    with pytest.raises(UserError, match="instances_val2014.json: missing the 'images' list"):
        datasets.load("coco2014", coco_root, check_images=False)
    no_file_name = json.loads(_coco_json([20], []))
    del no_file_name["images"][0]["file_name"]
    _write(coco_root / "annotations" / "instances_val2014.json", json.dumps(no_file_name))
    with pytest.raises(UserError, match="instances_val2014.json: malformed entry \\(KeyError: 'file_name'\\)"):
        datasets.load("coco2014", coco_root, check_images=False)


# ---------------------------------------------------------------- NUS-WIDE

NUS_CONCEPTS = ["lake", "sky", "cat"]
NUS_TRAIN = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
NUS_TEST = np.array([[0, 1, 1], [1, 1, 0], [0, 0, 0]])
NUS_TAGS = ["blue", "clouds", "sun", "sunset", "light"]


def _nus_label_files(split_suffix, labels, corrupt_row=None):
    files = {}
    for c, name in enumerate(NUS_CONCEPTS):
        values = [str(v) for v in labels[:, c]]
        if name == "lake" and corrupt_row is not None:
            values[corrupt_row] = "-1130179"
        files[f"Labels_{name}_{split_suffix}.txt"] = "\n".join(values) + "\n"
    return files


@pytest.fixture
def nus_root(tmp_path, rng):
    root = tmp_path / "NUS-WIDE"
    _write(root / "Concepts81.txt", "\r\n".join(NUS_CONCEPTS) + "\r\n")
    files = {**_nus_label_files("Train", NUS_TRAIN, corrupt_row=2), **_nus_label_files("Test", NUS_TEST)}
    for name, text in files.items():
        _write(root / "Groundtruth" / "TrainTestLabels" / name, text)
    with zipfile.ZipFile(tmp_path / "Groundtruth.zip", "w") as z:
        for name, text in files.items():
            z.writestr(f"TrainTestLabels/{name}", text)
    lists = {"Train": [f"lake\\{i:04d}_{i}.jpg" for i in range(4)], "Test": [f"sky\\{i:04d}_{i}.jpg" for i in range(3)]}
    for suffix, rows in lists.items():
        _write(root / "ImageList" / f"{suffix}Imagelist.txt", "\r\n".join(rows) + "\r\n")
        for rel in rows:
            _write(root / "Flickr" / rel.replace("\\", "/"), b"", "wb")
    os.remove(root / "Flickr" / "lake" / "0001_1.jpg")  # a dead Flickr link
    _write(root / "NUS_WID_Tags" / "TagList1k.txt", "\n".join(NUS_TAGS) + "\n")
    tags = {"Train": (rng.random((4, 5)) < 0.5).astype(int), "Test": (rng.random((3, 5)) < 0.5).astype(int)}
    for suffix, t in tags.items():
        text = "".join("\t".join(map(str, row)) + "\t\r\n" for row in t)  # trailing tab, CRLF
        _write(root / "NUS_WID_Tags" / f"{suffix}_Tags1k.dat", text)
    return root, tags


def test_nus_concepts_corrupt_entry_and_missing_image(nus_root):
    root, _ = nus_root
    ds = datasets.load("nuswide81", root)
    assert "Labels_lake_Train.txt: line 3 (image row 2): value '-1130179'" in ds.notes[0]
    assert ds.notes[1].startswith("train: 1 of 4 images are missing")
    assert ds.label_names == NUS_CONCEPTS
    train = ds.splits["train"]  # rows 0, 2, 3 remain
    np.testing.assert_array_equal(train.labels, [[1, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert train.ignore[1, 0] and train.ignore.sum() == 1  # the corrupt lake entry
    assert train.paths[1].endswith(os.path.join("Flickr", "lake", "0002_2.jpg"))
    test = ds.splits["test"]
    np.testing.assert_array_equal(test.labels, NUS_TEST)
    assert test.ignore is None


def test_nus_corrupt_error_policy(nus_root):
    root, _ = nus_root
    with pytest.raises(UserError, match=r"Labels_lake_Train.txt: line 3 \(image row 2\)"):
        datasets.load("nuswide81", root, corrupt="error", check_images=False)


def test_nus_labels_from_zip_equal_the_folder(nus_root):
    root, _ = nus_root
    _, from_dir, _ = nuswide.read_concept_labels(str(root))
    zipped = root.parent / "zipped"
    _write(zipped / "Concepts81.txt", "\n".join(NUS_CONCEPTS))
    os.rename(root.parent / "Groundtruth.zip", zipped / "Groundtruth.zip")
    _, from_zip, notes = nuswide.read_concept_labels(str(zipped))
    assert "Groundtruth.zip:TrainTestLabels/Labels_lake_Train.txt: line 3" in notes[0]
    for split in ("train", "test"):
        for a, b in zip(from_dir[split], from_zip[split]):
            np.testing.assert_array_equal(a, b)


def test_nus_tags(nus_root):
    root, tags = nus_root
    ds = datasets.load("nuswide1k", root, check_images=False)
    assert ds.label_names == NUS_TAGS
    np.testing.assert_array_equal(ds.splits["train"].labels, tags["Train"])
    np.testing.assert_array_equal(ds.splits["test"].labels, tags["Test"])
    assert ds.splits["train"].labels.dtype == np.uint8


def test_nus_row_count_mismatch_and_ragged_rows(nus_root):
    root, _ = nus_root
    _write(root / "ImageList" / "TestImagelist.txt", "sky\\a.jpg\n")
    with pytest.raises(UserError, match="TestImagelist.txt: 1 images, but the Test label files have 3 rows"):
        datasets.load("nuswide81", root, check_images=False)
    _write(root / "NUS_WID_Tags" / "Train_Tags1k.dat", "0 1 0 1 0\n1 1\n")
    with pytest.raises(UserError, match=r"Train_Tags1k.dat: line 2: expected 5 values, found 2"):
        datasets.load("nuswide1k", root, check_images=False)


def test_read_01_matrix_across_blocks(monkeypatch, rng):
    """Block boundaries in the middle of a line must not change the result."""
    table = (rng.random((50, 7)) < 0.5).astype(np.uint8)
    text = "".join(" ".join(map(str, row)) + "\n" for row in table)
    text = text.replace("\n", "\n\n", 1)  # a blank line: no row
    lines = text.split("\n")
    lines[40] = lines[40][:4] + "1.0 " + lines[40][6:]  # "1.0": still a 1
    lines[45] = "x" + lines[45][1:]  # corrupt
    text = "\n".join(lines)[:-1]  # no final newline
    monkeypatch.setattr(nuswide, "_BLOCK_BYTES", 37)
    values, bad = nuswide.read_01_matrix(io.BytesIO(text.encode()), "t.txt", 7)
    expected = table.copy()
    expected[39, 2] = 1
    expected[44, 0] = 0
    np.testing.assert_array_equal(values, expected)
    assert bad == [(46, 44, 0, "x")]


# ---------------------------------------------------------------- the documented commands


@pytest.mark.slow
def test_voc_recipe_commands_on_the_fixture(voc_root, tmp_path, rng):
    """extract --dataset voc2007 --root ... and train --dataset voc2007 --features ..., as in docs/real_datasets.md."""
    from PIL import Image

    from minicnnrnn import extract, train
    from minicnnrnn.cnn import vgg

    for jpg in (voc_root / "VOCdevkit" / "VOC2007" / "JPEGImages").iterdir():
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(jpg)
    meta = vgg.make_meta(config=[4, "M", 8, "M"], fc=(16, 16), num_classes=5, input_size=32)
    vgg.save(tmp_path / "cnn.npz", vgg.init_params(meta, rng), meta)
    root, feats, run = str(voc_root / "VOCdevkit"), str(tmp_path / "feats"), str(tmp_path / "run")
    assert (
        extract.main(["--dataset", "voc2007", "--root", root, "--weights", str(tmp_path / "cnn.npz"), "--out", feats])
        == 0
    )
    assert np.load(os.path.join(feats, "features.npy")).shape == (5, 16)
    assert train.main(["--dataset", "voc2007", "--root", root, "--features", feats, "--epochs", "1", "--out", run]) == 0
    with open(os.path.join(run, "metrics.json")) as f:
        assert list(json.load(f)["metrics"]) == ["C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "MAP@10", "mAP"]


def test_coco_keeps_each_annotations_area_and_box(coco_root):
    ds = datasets.load("coco2014", coco_root)
    train = ds.splits["train"]  # images 10, 11, 12 (4x4 pixels, 1x1 boxes, no "area": the box's)
    assert [len(o) for o in train.objects] == [4, 1, 0]
    first = train.objects[0][0]
    assert first == {"label": 0, "area": 1 / 16, "bbox": [0.0, 0.0, 1.0, 1.0]}
    areas = train.label_areas()  # per label: the sum of its objects' areas
    np.testing.assert_allclose(areas, [[3 / 16, 1 / 16, 0], [1 / 16, 0, 0], [0, 0, 0]])
    kept = train.subset(np.array([False, True, True]))
    assert [len(o) for o in kept.objects] == [1, 0]
