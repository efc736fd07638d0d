"""minicnnrnn: CNN-RNN for multi-label image classification (Wang et al., CVPR 2016),
written in plain NumPy/CuPy array code so that every line can be read.

Start with README.md and the tutorials; docs/DESIGN.md maps each module to the paper.
"""

__version__ = "0.1.0"
