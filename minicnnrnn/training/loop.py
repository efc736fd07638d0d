"""The training loop of ``python -m minicnnrnn.train`` (§3.4) and the evaluation after it.

One epoch: shuffle the training images, and for every mini-batch of N images compute the
loss and gradients of the model (``kinds.KINDS[cfg.model].batch_loss``: label paths and
the CNN-RNN, or a Table 3 baseline), clip the gradients to global norm ``cfg.clip`` and
take an rmsprop step (optim.py). The learning rate follows a cosine schedule from
``cfg.lr`` down towards 0 over ``cfg.epochs``. After every epoch ``out`` gets a checkpoint
(checkpoint.py) and the log, but only when every parameter and optimiser array is still
finite in float32 (a step can overflow the weights though the loss before it was finite):
otherwise the last good checkpoint stays and the run ends with one line naming the array.
At the end the test split is decoded and scored with the paper's metrics (§4.1).

The run owns its files: a random run identity, written at the start and kept by
``--resume``, is in ``checkpoint.npz`` and ``best.npz``; a ``best.npz`` of another run (or
of other data) beside the checkpoint is refused, never scored as this run's.

Everything random (initialisation, shuffles, dropout masks) comes from one host
``numpy.random.Generator`` seeded by ``cfg.seed``; its state is saved with each
checkpoint, so a resumed run finishes with exactly the result of an uninterrupted one.
"""

import csv
import dataclasses
import io
import math
import os
import time

import numpy as np

from minicnnrnn import __version__
from minicnnrnn.core import backend, fileio, progress, threads
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.paths import label_paths
from minicnnrnn.training import checkpoint, config, kinds, optim, schema, selection

LOG_FIELDS = ("epoch", "loss", "grad_norm", "lr", "seconds", "images_per_s", "val_O-F1", "val_C-F1", "val_score")
# A diverged epoch is run again from its start at half the learning rate, at most this many
# times in a run, before training stops with an error (docs/training.md, "Stability").
MAX_LR_HALVINGS = 3


def make_optimizer(cfg, params):
    """rmsprop with the paper's momentum and weight decay; the ReLU LSTM's U_r (and its
    U_w and b_lstm, ``gate_lr_scale``) learn slower (docs/training.md, "Stability")."""
    scale = {"U_r": cfg.recurrent_lr_scale} if "U_r" in params else {}
    if cfg.gate_lr_scale is not None:  # None: a checkpoint from before the option, full rate
        scale.update({name: cfg.gate_lr_scale for name in ("U_w", "b_lstm") if name in params})
    return optim.RMSprop(params, lr_scale=scale)


def run_epoch(cfg, params, opt, data, order, rng, epoch, lr_factor=1.0):
    """One pass over the shuffled training set. Returns the epoch's log row (a dict).
    Raises FloatingPointError at the first step whose loss or gradient is not finite.
    lr_factor: multiplies the scheduled learning rate (halved after a diverged epoch)."""
    batch_loss = kinds.KINDS[cfg.model].epoch_loss(cfg, epoch)  # a staged model's loss depends on the epoch
    lr = lr_factor * optim.cosine_schedule(cfg.lr, epoch, cfg.epochs)  # once per epoch
    n_train = len(data.train_labels)
    perm = rng.permutation(n_train)
    total, norms, start = 0.0, [], time.perf_counter()
    bar = progress.bar(n_train, f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", "img", leave=False, mininterval=0.5)
    try:
        for step, s in enumerate(range(0, n_train, cfg.batch_size)):
            idx = np.sort(perm[s : s + cfg.batch_size])  # sorted rows read memory-mapped features in order
            I = backend.to_device(data.train_features[idx])  # (N, D)
            value, grads = batch_loss(cfg, params, I, data.train_labels[idx], order, rng)
            norm = optim.clip_by_global_norm(grads, cfg.clip)
            if not (math.isfinite(value) and math.isfinite(norm)):
                raise FloatingPointError(f"loss {value} (gradient norm {norm}) at epoch {epoch + 1}, step {step + 1}")
            opt.step(params, grads, lr)
            total += value * len(idx)
            norms.append(norm)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2g}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch + 1,
        "loss": total / n_train,
        "grad_norm": float(np.mean(norms)),
        "lr": lr,
        "seconds": round(seconds, 3),
        "images_per_s": round(n_train / max(seconds, 1e-9), 1),
    }


def _start(cfg, data, ckpt_path, resume):
    """(params on the device, optimizer, label order, first epoch, history, rng, run id) of a
    fresh run, or of the run saved in ``ckpt_path`` when ``resume``."""
    if resume:
        state, rng = checkpoint.resume(ckpt_path, cfg, config.RESUME_KEYS, checkpoint.data_fingerprint(data))
        params = backend.params_to_device(state["params"])
        opt = make_optimizer(cfg, params)
        try:
            opt.load_state_dict(state["opt"])
        except (KeyError, ValueError) as exc:
            raise UserError(f"{ckpt_path}: optimizer state does not fit this model ({exc})") from None
        return params, opt, state["label_order"], state["epoch"], state["extra"], rng, state["run_id"]
    rng = np.random.default_rng(cfg.seed)
    order = label_paths.label_order(data.train_labels, cfg.label_order, cfg.seed)
    params = backend.params_to_device(kinds.KINDS[cfg.model].init(cfg, rng))
    return params, make_optimizer(cfg, params), order, 0, {}, rng, checkpoint.new_run_id()


def _snapshot(params, opt, rng):
    """What a diverged epoch is rolled back to: copies of the parameters (on the device), the
    optimizer state and the random stream at the start of the epoch."""
    return {k: v.copy() for k, v in params.items()}, opt.state_dict(), rng.bit_generator.state


def _restore(snapshot, params, opt, rng):
    """Put the parameters (in place), optimizer state and random stream back as :func:`_snapshot` took them."""
    saved, opt_state, rng_state = snapshot
    for k in params:
        params[k][...] = saved[k]
    opt.load_state_dict(opt_state)
    rng.bit_generator.state = rng_state


def _backoff_state(saved, path):
    """The learning-rate back-off ``{"halvings", "lr_factor"}`` a resumed run continues with
    ({} for a fresh run). Only the count is state; the factor, 0.5 ** halvings, is written
    beside it for whoever reads the checkpoint, and a pair that disagrees is refused."""
    backoff = {k: saved[k] for k in ("lr_factor", "halvings") if k in saved}
    halvings = backoff.get("halvings", 0)
    valid = isinstance(halvings, int) and 0 <= halvings <= MAX_LR_HALVINGS
    if not valid or backoff.get("lr_factor", 1.0) != 0.5**halvings:
        raise UserError(f"{path}: corrupt checkpoint metadata (learning-rate back-off {backoff})")
    return backoff


def run_epoch_or_back_off(cfg, params, opt, data, order, rng, epoch, backoff, ckpt_path):
    """:func:`run_epoch`; when it diverges (a non-finite loss or gradient), roll the model,
    optimizer and random stream back to the start of the epoch and run it again with the
    learning rate halved from then on (``backoff``, kept in the checkpoint, is updated in
    place), at most MAX_LR_HALVINGS times per run; then a one-line UserError."""
    snapshot = _snapshot(params, opt, rng)
    while True:
        halvings = backoff.get("halvings", 0)
        try:
            return run_epoch(cfg, params, opt, data, order, rng, epoch, 0.5**halvings)
        except FloatingPointError as exc:
            if halvings >= MAX_LR_HALVINGS:
                kept = f"kept {ckpt_path} (epoch {epoch})" if epoch > 0 else "no checkpoint was written"
                raise UserError(
                    f"training diverged: {exc}, after {MAX_LR_HALVINGS} halvings of the learning rate; "
                    f"{kept}; try a lower --lr"
                ) from None
            _restore(snapshot, params, opt, rng)
            backoff["halvings"], backoff["lr_factor"] = halvings + 1, 0.5 ** (halvings + 1)
            print(
                f"note: {cfg.model} diverged ({exc}); running epoch {epoch + 1} again from its start "
                f"with the learning rate halved (x{backoff['lr_factor']:g} from now on)",
                flush=True,
            )


def fit_once(cfg, data, out):
    """A model made in one pass (``kind.fit``, knn): fit, save OUT/checkpoint.npz (no
    optimizer, no epochs to resume). Returns (params on the device, [])."""
    rng = np.random.default_rng(cfg.seed)
    order = label_paths.label_order(data.train_labels, cfg.label_order, cfg.seed)
    params = backend.params_to_device(kinds.KINDS[cfg.model].fit(cfg, data, rng))
    state = {"params": backend.params_to_host(params), "config": cfg, "label_names": data.label_names}
    state.update(label_order=order, epoch=cfg.epochs, rng=checkpoint.rng_state(rng), run_id=checkpoint.new_run_id())
    state.update(data=checkpoint.data_fingerprint(data))
    check_finite_state(state, 0, os.path.join(out, "checkpoint.npz"))
    checkpoint.save(os.path.join(out, "checkpoint.npz"), state)
    print(f"{cfg.model}: fit on {len(data.train_labels)} training images", flush=True)
    return params, []


def fit(cfg, data, out, resume=False):
    """Train (or continue) a model. With a validation split (``data.val_labels``) every
    epoch is scored on it and the best epoch's parameters are written to OUT/best.npz
    (training/selection.py). Returns (params on the device: the best epoch's with a
    validation split, else the last epoch's; history)."""
    if kinds.KINDS[cfg.model].fit is not None:
        return fit_once(cfg, data, out)
    ckpt_path, best_path = os.path.join(out, "checkpoint.npz"), os.path.join(out, "best.npz")
    params, opt, order, first_epoch, saved, rng, run_id = _start(cfg, data, ckpt_path, resume)
    fingerprint = checkpoint.data_fingerprint(data)
    if resume and os.path.exists(best_path):  # before any work: a foreign best.npz is refused now
        checkpoint.check_same_run(best_path, checkpoint.load(best_path), run_id, fingerprint)
    history = saved.get("history", [])
    backoff = _backoff_state(saved, ckpt_path)
    validate = data.val_labels is not None
    _, best_score = selection.best_epoch(history)
    for epoch in range(first_epoch, cfg.epochs):
        row = run_epoch_or_back_off(cfg, params, opt, data, order, rng, epoch, backoff, ckpt_path)
        val = ""
        if validate:
            row.update(selection.validation_row(cfg, params, data))
            val = f"  val O-F1 {row['val_O-F1']:.1f} C-F1 {row['val_C-F1']:.1f}"
        history.append(row)
        progress.say(
            f"{cfg.model} epoch {row['epoch']}/{cfg.epochs}: loss {row['loss']:.4f}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s{val}"
        )
        state = {
            "params": backend.params_to_host(params),
            "opt": opt.state_dict(),
            "config": cfg,
            "label_names": data.label_names,
            "label_order": order,
            "epoch": epoch + 1,
            "rng": checkpoint.rng_state(rng),
            "extra": {"history": history, **backoff},
            "data": fingerprint,
            "run_id": run_id,
        }
        check_finite_state(state, epoch, ckpt_path)
        if validate and row["val_score"] > best_score:  # first of ties: a later epoch must beat it
            best_score = row["val_score"]
            checkpoint.save(best_path, dict(state, opt={}, extra={"history": history, "selected": "validation"}))
        checkpoint.save(ckpt_path, state)
        write_log(out, history)
    if validate and os.path.exists(best_path):
        best = checkpoint.load(best_path)
        checkpoint.check_same_run(best_path, best, run_id, fingerprint)
        params = backend.params_to_device(best["params"])
    return params, history


def check_finite_state(state, epoch, ckpt_path):
    """UserError naming the first parameter or optimiser array of ``state`` (about to be
    saved after epoch ``epoch + 1``) that is not finite in float32: the loss before the last
    step was finite, but the step itself overflowed. Nothing is written, so the checkpoint
    of epoch ``epoch`` (or none) stays as it was."""
    arrays = {f"parameter {k}": v for k, v in state["params"].items()}
    arrays.update({f"optimiser state {k}": v for k, v in state.get("opt", {}).items()})
    bad = schema.first_non_finite(arrays)
    if bad:
        kept = f"kept {ckpt_path} (epoch {epoch})" if epoch > 0 else "no checkpoint was written"
        raise UserError(
            f"training diverged in epoch {epoch + 1}: {bad} holds NaN or infinite values after a step; "
            f"{kept}; try a lower --lr"
        )


def write_log(out, history):
    """OUT/log.csv (one row per epoch) and OUT/loss.png (the training loss and, with a
    validation split, the validation score per epoch and the scored epoch)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in LOG_FIELDS} for row in history)
    fileio.save_text(os.path.join(out, "log.csv"), text.getvalue())
    import matplotlib  # slow to import: only when there is a curve to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(epochs, [r["loss"] for r in history], marker="o", color="C0", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss per image", color="C0")
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    chosen, _ = selection.best_epoch(history)
    if chosen is not None:  # the validation score per epoch, and the epoch it chose (the one scored)
        val = ax.twinx()
        val.plot(epochs, [r.get("val_score") for r in history], marker="s", color="C1", label="validation")
        val.set_ylabel("validation O-F1 + C-F1 (%)", color="C1")
        ax.axvline(chosen, color="C2", linestyle="--", label=f"scored epoch {chosen}")
        handles = ax.get_legend_handles_labels()[0] + val.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fileio.save_figure(os.path.join(out, "loss.png"), fig, dpi=100)
    plt.close(fig)


def evaluate(cfg, params, data, ranking_cfg=None):
    """Decode and score the test split (§4.1). Returns ``{"metrics": {the 8 keys of
    metrics.METRIC_KEYS}, "per_class_ap": [K], "labels_per_image": float, "pred": (n, K)
    uint8, "scores": (n, K)}``, metrics in percent (NaN AP: a class without test
    positives). AP is ``cfg.ap_mode``; VOC "difficult" entries are ignored. The ranking
    metrics use ``Decoded.ranking``: P(label in path) for the path models, under
    ``ranking_cfg``'s decoding rules when given (a decoding chosen on validation changes how
    the label sets are decided, not the paths' distribution that ranks the labels)."""
    # the presence depends on the grammar's min_labels, not on how the sets are decided
    if ranking_cfg is None or ranking_cfg.min_labels == cfg.min_labels:
        pred, scores = kinds.predict_sets(cfg, params, data.test_features)
    else:  # label sets decoded by cfg, ranking scores of the model's own paths (ranking_cfg)
        pred, _ = kinds.predict_sets(cfg, params, data.test_features, ranking=False)
        _, scores = kinds.predict_sets(ranking_cfg, params, data.test_features)
    result, ap = metrics.evaluate_with_ap(pred, scores, data.test_labels, data.test_ignore, ap_mode=cfg.ap_mode)
    return {
        "metrics": result,
        "per_class_ap": [float(a) for a in ap],
        "labels_per_image": float(pred.sum(axis=1).mean()) if len(pred) else 0.0,
        "pred": pred,
        "scores": scores,
    }


def store_decoding(out, cfg):
    """Write the decoding chosen on validation (``cfg``'s decode, beam, min_labels) into the
    config of OUT/best.npz and OUT/checkpoint.npz, so that ``predict`` decodes as the test
    split was decoded. Every other entry of the files stays as it was."""
    for name in ("best.npz", "checkpoint.npz"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            state = checkpoint.load(path)
            chosen = {key: getattr(cfg, key) for key in ("decode", "beam", "min_labels")}
            checkpoint.save(path, dict(state, config=dataclasses.replace(state["config"], **chosen)))


def run_record(cfg, history):
    """What metrics.json says about the run: dataset, k, model, LSTM variant, seed, package
    version, the epoch that was scored (chosen on validation, or the last), and the BLAS
    library and thread count (they move the last bits, and so the metrics: core/threads.py)."""
    chosen, _ = selection.best_epoch(history)
    return {
        "dataset": cfg.dataset,
        "k": cfg.k,
        "model": cfg.model,
        "variant": cfg.variant,
        "seed": cfg.seed,
        "version": __version__,
        "label_order": cfg.label_order,
        "epochs": cfg.epochs,
        "val_fraction": cfg.val_fraction,
        "scored_epoch": chosen if chosen is not None else (history[-1]["epoch"] if history else 0),
        **threads.describe(),
    }


def train_and_evaluate(cfg, data, out, resume=False):
    """fit + evaluate; writes OUT/metrics.json (``{"metrics": {...}, "labels_per_image",
    "run": run_record()}``) and OUT/per_class_AP.json. Returns the evaluate() result."""
    params, history = fit(cfg, data, out, resume)
    if kinds.KINDS[cfg.model].fit is None:  # knn has no epochs to score
        print(selection.scored_line(cfg, history), flush=True)
    progress.say(f"{cfg.model}: decoding and scoring the {len(data.test_labels)} test images")
    chosen, ranking_cfg = None, None
    if kinds.KINDS[cfg.model].paths and data.val_labels is not None and (cfg.tune_decoding or cfg.decode == "auto"):
        ranking_cfg = dataclasses.replace(cfg, decode="path")
        cfg, chosen = selection.tune_decoding(cfg, params, data)
        print(
            f"{cfg.model}: decoding chosen on validation: {selection.describe(cfg)} "
            f"(validation O-F1 + C-F1 {chosen['val_score']:.1f}; "
            "the run's own, {}: {:.1f})".format(*next(iter(chosen["tried"].items()))),
            flush=True,
        )
        store_decoding(out, cfg)
    result = evaluate(cfg, params, data, ranking_cfg)
    record = {
        "metrics": result["metrics"],
        "labels_per_image": result["labels_per_image"],
        "run": dict(run_record(cfg, history), **({"decoding": chosen} if chosen else {})),
    }
    fileio.save_json(os.path.join(out, "metrics.json"), record)
    per_class = {
        name: (ap if math.isfinite(ap) else None)  # JSON has no NaN: null = no positives
        for name, ap in zip(data.label_names, result["per_class_ap"])
    }
    fileio.save_json(os.path.join(out, "per_class_AP.json"), {"ap_mode": cfg.ap_mode, "AP": per_class})
    return result
