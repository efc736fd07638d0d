"""extract --shard I/N and the Dask runner: merged shards equal one extract run."""

import json

import numpy as np
import pytest
from PIL import Image

from minicnnrnn import extract, scale_out
from minicnnrnn.core.errors import UserError
from minicnnrnn.features import extraction, shards


def run_extract(*args):
    return extract.main([str(a) for a in args])


def read(folder):
    rows = np.load(folder / "features.npy")
    images = (folder / "images.txt").read_text().splitlines()
    return rows, images, json.loads((folder / "meta.json").read_text())


def make_images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize("n, count", [(10, 3), (7, 7), (5, 1), (160, 6)])
def test_shards_are_contiguous_and_cover_the_list_once(n, count):
    items = [f"p{i}" for i in range(n)]
    parts = [shards.select(items, i, count)[0] for i in range(count)]
    assert sum(parts, []) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shards.select(items, 1 % count, count) == shards.select(list(items), 1 % count, count)  # deterministic


@pytest.mark.parametrize("text", ["3/3", "-1/2", "a/b", "2", "0/0"])
def test_bad_shard_arguments_are_refused(text, capsys):
    with pytest.raises(SystemExit):
        run_extract("--images", "x.png", "--out", "o", "--shard", text)
    assert "--shard" in capsys.readouterr().err


def test_shards_by_hand_merge_to_the_single_run(tmp_path):
    paths = make_images(tmp_path / "imgs", 9)
    run_extract("--images", tmp_path / "imgs", "--out", tmp_path / "single", "--batch-size", 4)
    for i in range(3):
        run_extract("--images", tmp_path / "imgs", "--out", tmp_path / f"s{i}", "--shard", f"{i}/3")
    # a shard resumes / is recognised as done like any extract run
    run_extract("--images", tmp_path / "imgs", "--out", tmp_path / "s1", "--shard", "1/3")
    assert scale_out.main(["--merge", *(str(tmp_path / f"s{i}") for i in (2, 0, 1)), "--out", str(tmp_path / "m")]) == 0
    rows, images, meta = read(tmp_path / "m")
    rows1, images1, meta1 = read(tmp_path / "single")
    assert images == images1 == [str(p) for p in paths]
    # float32 tolerance: a shard runs the CNN on other batch sizes, and BLAS may pick other kernels
    np.testing.assert_allclose(rows, rows1, rtol=1e-4, atol=1e-5)
    for key in ("images_sha256", "weights_sha256", "layer", "dim", "count", "images"):
        assert meta[key] == meta1[key], key


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path):
    make_images(tmp_path / "imgs", 6)
    for i in range(3):
        run_extract("--images", tmp_path / "imgs", "--out", tmp_path / f"s{i}", "--shard", f"{i}/3")
    run_extract("--images", tmp_path / "imgs", "--out", tmp_path / "other", "--shard", "1/2")
    with pytest.raises(UserError, match=r"missing shard\(s\) \[1\]"):
        shards.merge([tmp_path / "s0", tmp_path / "s2"], tmp_path / "m")
    with pytest.raises(UserError, match="different image list or shard count"):
        shards.merge([tmp_path / "s0", tmp_path / "other"], tmp_path / "m")
    run_extract("--images", tmp_path / "imgs", "--out", tmp_path / "plain")
    with pytest.raises(UserError, match="not a shard"):
        shards.merge([tmp_path / "plain"], tmp_path / "m")


def test_dask_local_cluster_equals_single_run_on_real_coco_photos(tmp_path, shared_data):
    """The built-in CNN over the 160 real coco_tiny photos: once in one process, once as
    5 shards on a LocalCluster of 2 workers; the merged folder has the same rows in order."""
    distributed = pytest.importorskip("dask.distributed")
    root = shared_data / "coco_tiny"
    if not root.is_dir():
        pytest.skip("coco_tiny not present")
    paths = sorted(str(p) for p in (root / "val2017").glob("*.jpg")) + sorted(
        str(p) for p in (root / "train2017").glob("*.jpg")
    )
    single = tmp_path / "single"
    extraction.extract(paths, single, batch_size=32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        with distributed.Client(c) as client:
            record = scale_out.run_on_cluster(client, paths, {"images": "test"}, tmp_path / "dask", 5, batch_size=8)
    rows, images, meta = read(tmp_path / "dask")
    rows1, images1, meta1 = read(single)
    assert images == images1 == paths and len(images) >= 100
    # float32 tolerance: a shard runs the CNN on other batch sizes, and BLAS may pick other kernels
    np.testing.assert_allclose(rows, rows1, rtol=1e-4, atol=1e-5)
    assert record["count"] == meta["count"] == len(paths) and meta["images_sha256"] == meta1["images_sha256"]
    assert meta["source"]["shards"] == 5 and sorted(p.name for p in (tmp_path / "dask" / "shards").iterdir()) == [
        f"{i:04d}-of-0005" for i in range(5)
    ]


def test_scale_out_command_needs_a_scheduler_or_merge(tmp_path):
    with pytest.raises(UserError, match="--scheduler"):
        scale_out.main(["--images", str(tmp_path), "--out", str(tmp_path / "o")])
