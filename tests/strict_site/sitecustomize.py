"""Installs the strict device stand-in in commands that tests start (``--device strict``).

conftest.py puts this folder on PYTHONPATH and sets MINICNNRNN_STRICT_DEVICE=1, so every
``python -m minicnnrnn.<command>`` a test runs selects tests/strict_device/ as its
``cupy`` backend. Test-only: nothing in the package knows about it.
"""

import os
import sys

if os.environ.get("MINICNNRNN_STRICT_DEVICE") == "1":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import strict_boundary
    import strict_device

    strict_device.install()
    strict_boundary.install()  # tutorials call the package NumPy-style: see strict_boundary.py
