"""The strict device stand-in (tests/strict_device/): what it refuses, what it counts, and
the transfers of a training step and of a beam-search batch (constant, docs/DESIGN.md).

These tests install the stand-in themselves, so they run in the plain suite too."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import strict_device
from conftest import REPO, STRICT_SITE

from minicnnrnn.cnn import vgg
from minicnnrnn.core import backend
from minicnnrnn.paths import beam_search
from minicnnrnn.rnn import model
from minicnnrnn.training import kinds, optim
from minicnnrnn.training.config import RunConfig

sx = strict_device.xp


@pytest.fixture
def strict(monkeypatch):
    """The stand-in selected as ``cupy`` for this test; NumPy again afterwards."""
    previous = backend._test_device
    backend._install_test_device(sx)
    backend.use("cupy")
    yield sx
    backend._install_test_device(previous)
    backend.use("numpy")


# --- what the stand-in refuses, like CuPy -------------------------------------------------


def test_device_arrays_are_not_ndarrays_and_refuse_implicit_conversion():
    a = sx.arange(6.0).reshape(2, 3)
    assert not isinstance(a, np.ndarray) and isinstance(a, sx.ndarray)
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.array([a[0], a[1]])
    with pytest.raises(TypeError, match="numpy.mean"):
        np.mean(a)
    with pytest.raises(TypeError, match="numpy.exp"):
        np.exp(a)
    with pytest.raises(TypeError):
        np.zeros(6)[a.astype(sx.int64)]  # no __index__ / __array__: a host array cannot be indexed by it


def test_host_arrays_cannot_be_mixed_into_device_code():
    a, h = sx.ones((2, 3)), np.ones((2, 3))
    for bad in (lambda: a + h, lambda: h + a, lambda: a @ h.T, lambda: sx.maximum(a, h)):
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(TypeError):
        sx.concatenate([a, h])
    with pytest.raises(TypeError, match="indexed assignment"):
        a[0] = h[0]
    with pytest.raises(TypeError, match="indexing"):
        a[np.array([0, 1])]
    with pytest.raises(TypeError):
        a += h
    # NumPy *scalars* and Python numbers are fine, as in CuPy.
    assert float((np.float32(2) * a).sum()) == 12.0 and float((a + 1).sum()) == 12.0


def test_reductions_are_device_scalars_and_scalar_conversion_follows_cupy():
    a = sx.arange(4.0)
    total = a.sum()
    assert isinstance(total, sx.ndarray) and total.shape == ()
    strict_device.reset()
    assert float(total) == 6.0 and int(a[1]) == 1 and bool(a[1] > 0)
    assert strict_device.counts()["d2h"] == 3  # each is a copy back
    with pytest.raises(TypeError):
        float(a)  # size 4
    with pytest.raises(TypeError):
        [1, 2, 3][a[1].astype(sx.int64)]  # CuPy has no __index__
    with pytest.raises(ValueError):
        bool(a > 0)


def test_explicit_transfers_are_counted():
    strict_device.reset()
    a = sx.asarray(np.arange(3))
    b = sx.asarray(a)  # already on the device: no copy
    assert b is a and strict_device.counts() == {"h2d": 1, "d2h": 0, "sync": 0}
    host = a.get()
    assert isinstance(host, np.ndarray) and strict_device.counts()["d2h"] == 1
    sx.nonzero(a > 0)
    assert strict_device.counts()["sync"] == 1


def test_names_cupy_lacks_are_refused_when_cupy_is_importable():
    if strict_device._cupy is None:
        pytest.skip("CuPy cannot be imported here: the stand-in cannot check names against it")
    with pytest.raises(AttributeError, match="cupy has no attribute"):
        _ = sx.einsum_path  # NumPy has it, CuPy does not
    with pytest.raises(TypeError, match="does not accept keyword"):
        sx.repeat(sx.ones(3), 2, axis=0, out=None)


def test_backend_hook_routes_cupy_to_the_stand_in(strict):
    assert backend.name() == "cupy" and backend.is_cupy()
    x = backend.to_device(np.ones(3), np.float32)
    assert isinstance(x, sx.ndarray) and x.dtype == np.float32
    assert isinstance(backend.to_device(x, np.float64), sx.ndarray)  # device -> device, new dtype
    np.testing.assert_array_equal(backend.to_host(x), np.ones(3))
    backend.synchronize()


# --- transfers at the edges: constant per training step and per beam-search batch ----------


def _cfg(K, N, H):
    return RunConfig("cnn-rnn", K, 12, 8, H, "relu", None, batch_size=N, dropout=0.2, clip=1.0)


def _step_transfers(K, N, H, labels_per_image):
    """Transfers of one training step: batch loss (paths, dropout, forward, backward), the
    gradient clip and the rmsprop update, on N images whose label paths have the given
    length (T = labels_per_image + 1 steps)."""
    cfg = _cfg(K, N, H)
    rng = np.random.default_rng(0)
    params = backend.params_to_device(kinds.KINDS["cnn-rnn"].init(cfg, rng))
    opt = optim.RMSprop(params)
    labels = np.zeros((N, K), np.uint8)
    labels[:, :labels_per_image] = 1
    I = backend.to_device(rng.standard_normal((N, cfg.D)).astype(np.float32))
    order = np.arange(K)
    with strict_device.counting() as c:
        value, grads = kinds.KINDS["cnn-rnn"].batch_loss(cfg, params, I, labels, order, rng)
        norm = optim.clip_by_global_norm(grads, cfg.clip)
        opt.step(params, grads, 0.01)
    assert math.isfinite(value) and math.isfinite(norm)
    return c


def test_a_training_step_makes_a_constant_number_of_transfers(strict):
    small = _step_transfers(K=6, N=4, H=8, labels_per_image=1)  # T = 2
    large = _step_transfers(K=20, N=32, H=32, labels_per_image=12)  # T = 13, 8x the images
    assert small == large
    # paths (inputs, targets, mask) and the dropout mask in; the loss and the norm out; one
    # data-dependent size: the distinct tokens of the embedding backward (xp.unique)
    assert small["h2d"] == 4 and small["d2h"] == 2 and small["sync"] == 1


def _beam_transfers(n, K, beam):
    rng = np.random.default_rng(1)
    params = backend.params_to_device(model.init_params(K, 12, 8, 16, rng, "relu"))
    I = backend.to_device(rng.standard_normal((n, 12)).astype(np.float32))
    with strict_device.counting() as c:
        result = beam_search.beam_search(model.make_step(params, I, "relu"), n, beam_size=beam)
        host = [backend.to_host(a) for a in result[:5]]  # what kinds._decode_path brings back
    assert host[0].shape[0] == n
    return c, int(host[1].max()) + 1  # transfers, steps of the longest path


def test_a_beam_search_batch_moves_no_data_per_step_or_image(strict):
    small, _ = _beam_transfers(n=3, K=4, beam=2)
    large, _ = _beam_transfers(n=40, K=15, beam=3)
    # Data: nothing goes in, the five result arrays come out, whatever the images and steps.
    assert small["h2d"] == large["h2d"] == 0
    assert small["d2h"] == large["d2h"] == 5
    # The stopping rule reads how many images go on (a nonzero count) once or twice per
    # step: bounded by the path length, independent of the number of images.
    assert large["sync"] <= 2 * (15 + 1)


def _cnn_transfers(config, n):
    meta = vgg.make_meta(config=config, fc=[32, 24], num_classes=10, input_size=24)
    rng = np.random.default_rng(2)
    params = backend.params_to_device(vgg.init_params(meta, rng))
    x = backend.to_device(rng.standard_normal((n, 24, 24, 3)).astype(np.float32))
    with strict_device.counting() as c:
        outs, _ = vgg.vgg_forward(params, meta, x, ("fc7", "logits"))
    assert outs["logits"].shape == (n, 10)
    return c


def test_the_cnn_forward_moves_nothing_whatever_its_depth(strict):
    _cnn_transfers([8, 8, "M"], n=1)  # the first Winograd layer of a process copies kron(G, G) once
    shallow = _cnn_transfers([8, "M", 16, "M", 16, "M"], n=2)
    deep = _cnn_transfers([8, 8, "M", 16, 16, 16, "M", 16, 16, "M"], n=6)
    assert shallow == deep == {"h2d": 0, "d2h": 0, "sync": 0}


# --- a command on the stand-in ------------------------------------------------------------


def test_train_command_runs_on_the_stand_in(tmp_path):
    """``python -m minicnnrnn.train --backend cupy`` (small run) in a process whose ``cupy``
    is the stand-in: any implicit host<->device conversion in the command would fail it."""
    rng = np.random.default_rng(1)
    K, D = 4, 10
    W = rng.standard_normal((K, D))

    def split(n):
        y = (rng.random((n, K)) < 0.4).astype(np.uint8)
        y[y.sum(1) == 0, 0] = 1
        return (y @ W + 0.3 * rng.standard_normal((n, D))).astype(np.float32), y

    (trf, trl), (tef, tel) = split(96), split(40)
    npz = tmp_path / "tiny.npz"
    names = np.array(["a", "b", "c", "d"])
    np.savez(npz, train_features=trf, train_labels=trl, test_features=tef, test_labels=tel, label_names=names)
    env = dict(os.environ, MINICNNRNN_STRICT_DEVICE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(STRICT_SITE), str(REPO)])
    cmd = [sys.executable, "-m", "minicnnrnn.train", "--dataset", f"npz:{npz}", "--backend", "cupy"]
    cmd += ["--epochs", "2", "--embed", "8", "--hidden", "16", "--batch-size", "32", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    probe = "from minicnnrnn.core import backend; backend.use('cupy'); print(type(backend.xp.zeros(1)).__name__)"
    check = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert check.stdout.strip() == "StrictArray", check.stderr
