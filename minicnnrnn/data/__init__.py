"""The built-in dataset (``--dataset builtin``): Tiny Scenes pictures and features of the shipped CNN.

* :mod:`minicnnrnn.data.tinyscenes`: the procedural multi-label picture generator
  (``LABEL_NAMES``, ``generate``, ``load``);
* :mod:`minicnnrnn.data.features`: the shipped small CNN and its features of a split
  (``load_builtin_cnn``, ``builtin_features``);
* :mod:`minicnnrnn.data.stats`: label statistics and pictures
  (``python -m minicnnrnn.data.stats``);
* :mod:`minicnnrnn.data.cache`: the checksummed disk cache they share.
"""
NAME = "builtin"
