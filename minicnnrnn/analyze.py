"""Read a trained CNN-RNN: the paper's analyses (Table 5, Figures 7-10) as files.

    python -m minicnnrnn.analyze --checkpoint runs/cnn-rnn --out runs/analysis
    python -m minicnnrnn.analyze --checkpoint runs/compare/cnn-rnn --compare-with runs/compare/bce
    python -m minicnnrnn.analyze --checkpoint runs/iapr --dataset npz:iaprtc12.npz

Writes into ``--out`` (names fixed, docs/analysis.md): ``table5_neighbours.md`` (Table 5),
``joint_space.md`` (Fig. 9), ``per_class.json`` and ``per_class.png`` (Fig. 7),
``recall_by_size.json`` and ``recall_by_size.png`` (Fig. 8) and ``attention/*.png``
(Fig. 10, built-in data). ``--dataset`` takes what ``train`` takes and must be the data
the checkpoint was trained on: a checkpoint (or ``--compare-with``) whose data
fingerprint differs is refused, and so is a ``best.npz`` of another run beside it.
``--out`` is locked as ``train`` locks its folder. A run folder means its best.npz, the
epoch train scored (``--last-epoch``: its checkpoint.npz); a file is used as given. This
file is the command; the work is in ``minicnnrnn/analysis/``.
"""

import os
import time

from minicnnrnn.analysis import collect, per_class, report
from minicnnrnn.core import cli, fileio
from minicnnrnn.training import checkpoint, schema, selection
from minicnnrnn.training import data as train_data


def make_parser():
    p = cli.make_parser("python -m minicnnrnn.analyze", __doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a cnn-rnn run folder written by train (its best.npz, the epoch train scored) or a checkpoint file",
    )
    p.add_argument("--compare-with", help="a second model's run folder or checkpoint (e.g. bce) for Fig. 7 and 8")
    p.add_argument("--last-epoch", action="store_true", help="with run folders: their last epoch (checkpoint.npz)")
    p.add_argument("--out", default="runs/analysis", help="output folder")
    p.add_argument("--dataset", default="builtin", help="the data the model was trained on (as in train)")
    p.add_argument("--root", help="dataset folder (real datasets)")
    p.add_argument("--features", help="features folder written by `python -m minicnnrnn.extract` (real datasets)")
    p.add_argument("--n-train", type=cli.positive_int, default=4000, help="built-in training images (as in train)")
    p.add_argument("--n-test", type=cli.positive_int, default=1000, help="built-in test images (as in train)")
    p.add_argument("--neighbours", type=cli.positive_int, default=5, help="labels listed per row (Table 5, Fig. 9)")
    p.add_argument("--joint-images", type=cli.positive_int, default=8, help="test images in joint_space.md")
    p.add_argument("--attention-images", type=cli.positive_int, default=64, help="test pictures measured for Fig. 10")
    p.add_argument("--pictures", type=cli.non_negative_int, default=6, help="Fig. 10 pictures drawn")
    return p


def _load_scored(path, last_epoch):
    """(file, state) of the model ``path`` names (training/selection.py: a run folder's
    best.npz, or the file as given), saying which file and epoch. A best.npz must belong to
    the run of the checkpoint.npz beside it."""
    path = selection.scored_checkpoint(path, last_epoch)
    state = checkpoint.load(path)
    last = os.path.join(os.path.dirname(os.path.abspath(path)), "checkpoint.npz")
    if os.path.basename(path) == "best.npz" and os.path.isfile(last):
        run = checkpoint.load(last)
        checkpoint.check_same_run(path, state, run.get("run_id"), run.get("data"))  # not another run's file
    print(selection.describe_checkpoint(path, state), flush=True)
    return path, state


def check_data(state, data, where):
    """UserError unless ``state`` was trained on ``data``: sizes and label names, and the
    data fingerprint's feature values where the checkpoint has them."""
    collect.check_fits(state, data, where)
    saved = state.get("data")
    if saved and saved.get("features_sha256"):
        current = {"label_names": list(data.label_names), "features_sha256": schema.features_hash(data)}
        current.update({key: saved.get(key) for key in ("labels_sha256", "feature_shape")})  # splits may differ
        schema.check_same_data(where, saved, current, "pass the --dataset it was trained on")


def main(argv=None):
    args = cli.parse(make_parser(), argv)
    start, cpu = time.perf_counter(), time.process_time()
    args.checkpoint, state = _load_scored(args.checkpoint, args.last_epoch)
    other = None
    if args.compare_with:
        args.compare_with, other = _load_scored(args.compare_with, args.last_epoch)
    data = train_data.load(args)
    check_data(state, data, args.checkpoint)
    if other is not None:
        check_data(other, data, args.compare_with)
    options = collect.Options(args.neighbours, args.joint_images, args.attention_images, args.pictures, args.n_test)
    with fileio.folder_lock(args.out):  # as train's: two analyses never mix their files in one --out
        results = collect.collect(state, data, other, options)
        report.write_all(args.out, results)
    for run in results["models"]:
        print(
            f"{run['kind']}: C-P {100 * run['C-P']:.1f}  C-R {100 * run['C-R']:.1f}  "
            f"(mean per-class recall {100 * per_class.mean_recall(run['per_class']):.1f})"
        )
    att = results["attention"]
    if att is None:
        print(f"note: {results['attention_note']}")
    else:
        for rule, ratio in att["mass_ratio"].items():
            print(
                f"Fig. 10 {rule}: {ratio:.2f}x the area share of the map lies on the predicted label's "
                f"objects ({att['pairs'][rule]} steps of {len(att['images'])} test pictures)"
            )
    print(
        f"wrote {args.out} in {time.perf_counter() - start:.1f} s "
        f"({time.process_time() - cpu:.1f} s CPU in this process)"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
