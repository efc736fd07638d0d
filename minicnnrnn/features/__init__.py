"""Images -> feature rows on disk: the library behind ``extract`` and ``scale_out``.

The paper keeps the CNN fixed and computes each image's representation I (Eq. 4) once;
this room does that for any number of images. The commands only parse arguments and call it.

* :mod:`images`: which images (``--images``, ``--image-list``, ``--dataset``) and their
  decoding, a batch ahead in background threads;
* :mod:`network`: the CNN whose layer gives the rows (a converted weights file or the
  built-in one), checked, with the fingerprint a features folder records;
* :mod:`extraction`: the engine that writes a features folder, with resume
  (``progress.json``), a memory-mapped ``.npy`` and bounded memory;
* :mod:`shards`: ``extract --shard I/N`` slices of the image list and their merge.

The one images -> rows function itself is :func:`minicnnrnn.cnn.backbones.feature_rows`
(also used by ``predict`` and by the built-in data, :mod:`minicnnrnn.tinyscenes.features`).
"""
