"""Every method over several seeds, as statistics: ``train --compare --seeds 0-4``.

One seed's table is an anecdote: the seed moves each metric by a point or two. So each
seed s gets its own validation split (selection.py) and every method is trained on it
with seed s; the table shows, per method and column, the mean ± sd over the seeds, and
the paired difference to binary cross-entropy (method - BCE on the same seed) with its
standard error (evaluation/stats.py). Only a difference beyond 2 standard errors is
marked; the words "best", "beats", "level" in the docs follow those marks.

    per_seed, failures = compare.run_seeds(args, raw_data, names, outs, seeds)
    text = compare.markdown(per_seed)          # what train prints and compare.md holds
    compare.save(base, per_seed, text)         # compare.json: every seed's rows

Rows: {method title: {metric column: percent, "L/img": labels per image}}, with the
two matched operating points of BCE (evaluation/operating_points.py) when both BCE and
the CNN-RNN ran.
"""

import os

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics, operating_points, stats
from minicnnrnn.training import config, kinds, loop, selection
from minicnnrnn.training import data as train_data

LPI = "L/img"  # the table's labels-per-image column
COLUMNS = metrics.METRIC_KEYS + (LPI,)
REFERENCE = "Binary cross-entropy"  # the row every paired difference is taken against


def matched_rows(data, cfg, results):
    """BCE at matched operating points (evaluation/operating_points.py), when both bce and
    cnn-rnn ran: {row title: evaluate()-like result} in the printing order."""
    if "scores" not in results.get("bce", {}) or "pred" not in results.get("cnn-rnn", {}):
        return {}
    scores = results["bce"]["scores"]
    picks = {
        "BCE at CNN-RNN's counts": operating_points.top_per_image(scores, results["cnn-rnn"]["pred"].sum(axis=1)),
        f"BCE >= 0.5 (at most {cfg.k})": operating_points.thresholded(scores, 0.5, cap=cfg.k),
    }
    rows = {}
    for title, pred in picks.items():
        result, _ = metrics.evaluate_with_ap(pred, scores, data.test_labels, data.test_ignore, ap_mode=cfg.ap_mode)
        rows[title] = {"metrics": result, "labels_per_image": float(pred.sum(axis=1).mean())}
    return rows


def method_rows(data, cfg, results):
    """{row title: {column: value}} of one seed: every model of ``results`` (name ->
    evaluate() result) by its title, then BCE at the CNN-RNN's operating points."""
    named = {kinds.KINDS[name].title: r for name, r in results.items()}
    named.update(matched_rows(data, cfg, results))
    return {title: dict(r["metrics"], **{LPI: r.get("labels_per_image")}) for title, r in named.items()}


def seed_outputs(base, names, seeds):
    """{(seed, model name): output folder}: BASE/seed-S/NAME."""
    return {(s, name): os.path.join(base, f"seed-{s}", name) for s in seeds for name in names}


def run_seeds(args, raw, names, outs, seeds):
    """Train and score every model of ``names`` on every seed, as ``train`` does one run
    (``config.from_args``, ``loop.train_and_evaluate``).

    args: train's parsed options (``args.model`` and ``args.seed`` are set per run); raw:
    the loaded data before the validation split; each seed splits it and fits the feature
    normalisation itself; outs: :func:`seed_outputs`. A run that fails with a UserError
    leaves a hole in its row and the others go on. Returns
    ({seed: {row title: {column: value}}}, [failure lines])."""
    per_seed, failures = {}, []
    for seed in seeds:
        args.seed = seed
        data = selection.split_validation(raw, args.val_fraction, seed)
        norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
        data = data.with_norm(norm)
        results, cfg = {}, None
        for name in names:
            args.model = name
            try:
                cfg = config.from_args(args, data, norm)
                results[name] = loop.train_and_evaluate(cfg, data, outs[(seed, name)], args.resume)
                print(f"{name} seed {seed}: outputs in {outs[(seed, name)]}", flush=True)
            except UserError as exc:  # the other runs go on; the failed one is a hole in its row
                failures.append(f"seed {seed} {name}: {exc}")
                print(f"seed {seed} {name}: failed ({exc})", flush=True)
        per_seed[seed] = method_rows(data, cfg, results) if results else {}
    return per_seed, failures


def _titles(per_seed):
    """Row titles in first-seen order over the seeds."""
    return list(dict.fromkeys(t for rows in per_seed.values() for t in rows))


def _column(per_seed, title, column):
    return [rows.get(title, {}).get(column, float("nan")) for rows in per_seed.values()]


def _cell(value, spread, digits, signed=False):
    if value != value:  # NaN: no run of this method gave the column
        return "-"
    sign = "+" if signed else ""
    return f"{value:{sign}.{digits}f}" + ("" if spread != spread else f" ± {spread:.{digits}f}")


def summary(per_seed, reference=REFERENCE, columns=COLUMNS):
    """Statistics of ``per_seed`` ({seed: rows}): {title: {column: {"mean", "sd", "diff",
    "se", "clear"}}} for each of ``columns``; diff/se/clear: the paired difference to
    ``reference`` (absent on the reference's own row and when it did not run)."""
    out = {}
    for title in _titles(per_seed):
        out[title] = {}
        for c in columns:
            values = _column(per_seed, title, c)
            mean, sd = stats.mean_sd(values)
            cell = {"mean": mean, "sd": sd}
            if title != reference and reference in _titles(per_seed):
                diff, se = stats.paired_difference(values, _column(per_seed, reference, c))
                cell.update(diff=diff, se=se, clear=stats.is_clear(diff, se))
            out[title][c] = cell
    return out


def _seed_words(seeds):
    seeds = list(seeds)
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    listed = f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 2 else ", ".join(map(str, seeds))
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({listed})"


def markdown(per_seed, title="", reference=REFERENCE, columns=COLUMNS, digits=None):
    """Two markdown tables: mean ± sd over the seeds per method and column (``columns``:
    keys of the rows), and each method's paired difference to ``reference`` ± its standard
    error, ``*`` where it exceeds 2 standard errors. ``digits``: {column: decimals} for
    columns that are not percent (default: one decimal, L/img two)."""
    table = summary(per_seed, reference, columns)
    head = "| method | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|"
    digits = {c: 2 if c == LPI else 1 for c in columns} | (digits or {})
    means = [
        f"| {t} | " + " | ".join(_cell(row[c]["mean"], row[c]["sd"], digits[c]) for c in columns) + " |"
        for t, row in table.items()
    ]
    parts = [title] if title else []
    parts.append(f"Mean ± sd over {_seed_words(per_seed)}:\n\n" + head + "\n" + "\n".join(means))
    diffs = [
        f"| {t} | "
        + " | ".join(
            _cell(row[c]["diff"], row[c]["se"], digits[c], signed=True) + (" *" if row[c]["clear"] else "")
            for c in columns
        )
        + " |"
        for t, row in table.items()
        if "diff" in row[columns[0]]
    ]
    if diffs:
        parts.append(
            f"Paired difference to {reference} (method - {reference} on the same seed), ± its standard "
            f"error (sd / sqrt(n)); `*`: more than {stats.CLEAR:g} standard errors from zero. Where a "
            "cell has no `*`, the two are level at this number of seeds.\n\n" + head + "\n" + "\n".join(diffs)
        )
    return "\n\n".join(parts)


def save(base, per_seed, text, columns=COLUMNS):
    """BASE/compare.json (every seed's rows and the statistics of ``columns``) and
    BASE/compare.md (``text``)."""
    stats_of = summary(per_seed, columns=columns)
    fileio.save_json(
        os.path.join(base, "compare.json"),
        {"seeds": list(per_seed), "per_seed": {str(s): r for s, r in per_seed.items()}, "summary": stats_of},
    )
    fileio.save_text(os.path.join(base, "compare.md"), text + "\n")
