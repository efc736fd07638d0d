"""The built-in dataset (``--dataset builtin``): Tiny Scenes pictures and features of the shipped CNN.

* :mod:`minicnnrnn.tinyscenes.scenes`: the procedural multi-label picture generator
  (``LABEL_NAMES``, ``generate``, ``load``);
* :mod:`minicnnrnn.tinyscenes.features`: the shipped small CNN and its features of a split
  (``load_builtin_cnn``, ``builtin_features``);
* :mod:`minicnnrnn.tinyscenes.stats`: label statistics and pictures
  (``python -m minicnnrnn.tinyscenes.stats``);
* :mod:`minicnnrnn.tinyscenes.cache`: the checksummed disk cache they share.
"""

NAME = "builtin"
