"""Datasets (a registry of on-disk layouts) and the deterministic on-device loader.

The names of ``__all__`` import torch, so they are bound on first use (PEP 562 ``__getattr__`` below):
importing :mod:`sharpkit.data.dataset_names` (the dataset-name parser, which the torch-free analysis layer
reads) runs this file without importing torch. ``from sharpkit.data import DeviceLoader`` works as ever.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; _bind_names binds the same names at run time
    from .base import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, CorruptedImageDataset, ImageDataset
    from .datasets import (
        DATASETS,
        data_root,
        list_datasets,
        load_clean,
        load_corrupted,
        load_dataset,
        register_dataset,
    )
    from .loader import AUGMENTATIONS, DeviceLoader, derived_generator, subset_indices

__all__ = [
    "AUGMENTATIONS", "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD",
    "CorruptedImageDataset", "DeviceLoader", "ImageDataset", "data_root",
    "derived_generator", "list_datasets", "load_clean", "load_corrupted", "load_dataset", "register_dataset",
    "subset_indices",
]

# The modules that define the names of __all__ (those the TYPE_CHECKING block imports from), relative to this package.
_MODULES = (".base", ".datasets", ".loader")


def _bind_names() -> None:
    """Imports the modules of ``__all__`` (and torch with them) and binds each of its names in this package."""
    modules = [importlib.import_module(name, __name__) for name in _MODULES]
    namespace = globals()
    for name in __all__:
        if name in namespace:
            continue
        found = [vars(m)[name] for m in modules if name in vars(m) and not isinstance(vars(m)[name], ModuleType)]
        if not found:
            raise ImportError(f"sharpkit.data exports {name!r}, but none of its modules {', '.join(_MODULES)} "
                              "defines it; add the module that does to _MODULES.")
        namespace[name] = found[0]


def __getattr__(name: str) -> Any:
    if name in __all__:
        _bind_names()
        return globals()[name]
    # A submodule as an attribute (``sharpkit.data.datasets`` after ``import sharpkit.data``), as when this
    # package imported them eagerly; importing it binds it here.
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
