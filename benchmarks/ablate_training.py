"""Training levers of the CNN-RNN (issue: embedding size, dropout, ReLU gates, the U_r and
gate learning-rate scaling), each one run of ``train``, judged on validation.

    python benchmarks/ablate_training.py --seeds 0 1

Every variant changes one setting of a small default run (``--hidden``, ``--epochs``,
``--n-train`` below); the table shows the best validation O-F1 + C-F1 (what model
selection maximises) and the test C-F1 / O-F1 / mAP of that epoch: mean ± sd over the seeds, and
each lever's paired difference to the default run ± its standard error.
"""

import argparse
import contextlib
import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicnnrnn import train  # noqa: E402
from minicnnrnn.training import compare  # noqa: E402

DEFAULT = "default (E 64, dropout 0.5, bounded, U_r 0.01, gates 0.1)"
COLUMNS = ("val", "C-F1", "O-F1", "mAP", "L/img")  # val: the best validation O-F1 + C-F1
VARIANTS = {
    DEFAULT: [],
    "paper's uncapped ReLU LSTM": ["--variant", "relu"],
    "E 16": ["--embed", "16"],
    "E 128": ["--embed", "128"],
    "dropout 0": ["--dropout", "0"],
    "dropout 0.25": ["--dropout", "0.25"],
    "conventional LSTM": ["--variant", "conventional"],
    "U_r at full rate": ["--recurrent-lr-scale", "1"],
    "gates at full rate": ["--gate-lr-scale", "1"],
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--out", default=os.path.join("runs", "ablate_training"))
    opts = p.parse_args(argv)
    per_seed = {seed: {} for seed in opts.seeds}  # {seed: {variant: {column: value}}}
    failed = []
    for name, extra in VARIANTS.items():
        for seed in opts.seeds:
            out = os.path.join(opts.out, name.split(" (")[0].replace(" ", "_"), str(seed))
            argv = ["--seed", str(seed), "--epochs", str(opts.epochs), "--hidden", str(opts.hidden), "--out", out]
            argv += ["--n-train", str(opts.n_train), "--n-test", str(opts.n_test)]
            argv += ["--presence-samples", str(opts.samples), *extra]
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    train.main(argv)
            except Exception as exc:  # a diverged variant is a result: a hole in its row
                failed.append(f"{name}, seed {seed}: {exc}")
                continue
            record = json.load(open(os.path.join(out, "metrics.json")))
            val = max(float(r["val_score"]) for r in csv.DictReader(open(os.path.join(out, "log.csv"))))
            m = record["metrics"]
            per_seed[seed][name] = {"val": val, "C-F1": m["C-F1"], "O-F1": m["O-F1"], "mAP": m["mAP"]}
            per_seed[seed][name][compare.LPI] = record["labels_per_image"]
    # mean ± sd over the seeds, and each lever's paired difference to the default run (training/compare.py)
    print(compare.markdown(per_seed, reference=DEFAULT, columns=COLUMNS))
    for line in failed:
        print(f"\nfailed: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
