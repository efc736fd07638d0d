"""Spread ``extract`` over a Dask cluster, or merge shards run by hand: ``python -m minicnnrnn.scale_out``.

    # on a cluster: one task per shard, then the merged folder OUT (docs/scale_out.md)
    python -m minicnnrnn.scale_out --scheduler tcp://head:8786 --shards 64 \\
        --weights efficientnet_lite0.npz --dataset nuswide81 --root NUS-WIDE --out feats/nus
    # the same on this machine's cores (a LocalCluster)
    python -m minicnnrnn.scale_out --scheduler local --local-workers 2 --shards 4 --images photos/ --out feats/p
    # shards run any other way (`extract --shard I/N` on a batch queue): merge them
    python -m minicnnrnn.scale_out --merge feats/p/shards/* --out feats/p

Each task runs :func:`minicnnrnn.features.extraction.extract` (the engine ``extract``
runs) on one shard (a contiguous slice of the image list,
:mod:`minicnnrnn.features.shards`) into ``OUT/shards/I-of-N``;
the shards are then concatenated in order into ``OUT``, which holds the same rows in
the same order as a single ``extract`` run over the whole list. Workers must see the
same files as the client (a shared filesystem: images, weights, OUT) and have
minicnnrnn installed. Rerunning the same command resumes: finished shards are kept,
unfinished ones continue after their last finished batch.

Dask (``pip install "minicnnrnn[dask]"``) is imported only by this command.
"""

import os

from minicnnrnn.core import cli
from minicnnrnn.core.errors import UserError
from minicnnrnn.features import extraction, images, shards


def extract_shard(paths, folder, source, options):
    """One Dask task: extract one shard into `folder`. Returns its meta.json record."""
    return extraction.extract(paths, folder, source=source, **options)


def run_on_cluster(client, paths, source, out, count, **options):
    """Extract `paths` in `count` shards on a ``dask.distributed.Client``; merge into `out`.

    options: keyword arguments of :func:`minicnnrnn.features.extraction.extract` (weights, layer,
    batch_size, resize, strict, overwrite, workers). Returns the merged meta.json record.
    """
    if count < 1:
        raise UserError(f"--shards: must be at least 1, got {count}")
    if count > len(paths):
        raise UserError(f"--shards: {count} shards for {len(paths)} images; use at most {len(paths)}")
    folders, futures = [], []
    tag = shards.list_sha256(paths)[:12]
    for index in range(count):
        part, record = shards.select(paths, index, count)
        folder = shards.shard_folder(out, index, count)
        folders.append(folder)
        key = f"minicnnrnn-extract-{tag}-{index}-of-{count}"
        futures.append(client.submit(extract_shard, part, folder, dict(source, shard=record), options, key=key))
    client.gather(futures)  # a failed shard raises here; the finished ones are kept on disk
    return shards.merge(folders, out)


def _client(scheduler, local_workers):
    """A dask.distributed Client for --scheduler (an address, or "local" for a LocalCluster)."""
    try:
        from dask import distributed
    except ImportError:
        raise UserError('--scheduler: needs Dask; pip install "minicnnrnn[dask]" (dask[distributed])') from None
    if scheduler == "local":
        # The client starts the LocalCluster itself, so closing the client stops its workers.
        return distributed.Client(n_workers=local_workers, threads_per_worker=1, dashboard_address=None)
    try:
        return distributed.Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise UserError(f"--scheduler {scheduler}: cannot connect ({type(exc).__name__}: {exc})") from None


def make_parser():
    p = cli.make_parser(
        "python -m minicnnrnn.scale_out",
        "Run `extract` as N shards on a Dask cluster and merge them, or merge shards made with `extract --shard`.",
    )
    p.add_argument("--out", required=True, help="the merged features folder (shards go in OUT/shards/)")
    p.add_argument("--merge", nargs="+", metavar="SHARD_DIR", help="only merge these finished shard folders")
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786), or local for a LocalCluster")
    p.add_argument("--local-workers", type=cli.positive_int, default=2, help="worker processes of --scheduler local")
    p.add_argument("--shards", type=cli.positive_int, default=8, help="number of shards (tasks)")
    p.add_argument("--weights", help="converted weights .npz, readable on every worker; default: the built-in CNN")
    images.add_options(p, required=False)  # not with --merge
    p.add_argument("--layer", help="layer to store; default: fc7 (VGG), pool (EfficientNet)")
    p.add_argument("--batch-size", type=cli.positive_int, default=16, help="images per forward pass")
    p.add_argument("--resize", choices=("crop", "warp"), help="default: what the weights file records")
    p.add_argument("--workers", type=cli.positive_int, default=2, help="threads decoding images in each task")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in the shard folders")
    return p


def main(argv=None):
    args = cli.parse(make_parser(), argv, big_matrices=True)
    if args.merge:
        record = shards.merge(args.merge, args.out)
        print(f"merged {len(args.merge)} shards into {args.out}/features.npy ({record['count']} x {record['dim']})")
        return 0
    if not args.scheduler:
        raise UserError("--scheduler: required (an address such as tcp://head:8786, or local), unless --merge")
    paths, source = images.of_args(args)
    options = dict(
        weights=os.path.abspath(args.weights) if args.weights else None,
        layer=args.layer,
        batch_size=args.batch_size,
        resize=args.resize,
        strict=args.strict,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    with _client(args.scheduler, args.local_workers) as client:
        record = run_on_cluster(client, paths, source, os.path.abspath(args.out), args.shards, **options)
    print(f"wrote {args.out}/features.npy ({record['count']} x {record['dim']}, {args.shards} shards)")
    return 0


if __name__ == "__main__":
    cli.run(main)
