"""sharpkit: datasets, models, training controls, sharpness-aware optimizers and sharpness metrics
for "Understanding Deep Learning Requires Rethinking Sharpness"."""
__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it, result records store it

from . import _moved

_moved.install()  # `import sharpkit.train` and the other 0.1 paths keep working (see sharpkit/_moved.py)
