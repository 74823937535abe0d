"""The dataset registry: a name -> the whole dataset in memory as uint8 tensors.

Every loader returns an :class:`~sharpkit.data.base.ImageDataset` (train + test split) or, for the
corruption benchmarks, a :class:`~sharpkit.data.base.CorruptedImageDataset`; images are uint8
(N, 3, H, W), labels int64. Normalisation is *not* applied here: each dataset carries the mean/std
the protocol uses for it (the authors' code, GitHub
``IFMW01/a_function-centric_perspective_on_flat_and_sharp_minima`` at commit 20e3acc; the book's
protocol page, "Design", lists them).

Registered names (``list_datasets()``), with the on-disk layout under the data root and the module
of :mod:`sharpkit.data.formats` that reads it:

- ``cifar10``: ``cifar-10-batches-py/`` (torchvision's pickles); 50k/10k, 32 px, 10 classes
  (:mod:`~sharpkit.data.formats.cifar`).
- ``cifar100``: ``cifar-100-python/`` (fine labels); 50k/10k, 32 px, 100 classes (``cifar``).
- ``tinyimagenet``: ``tiny-imagenet-200/``; 100k/10k (test = the labelled val split), 64 px,
  200 classes, ImageNet normalisation (``tinyimagenet``).
- ``cifar10-c``, ``cifar100-c``: ``CIFAR-10-C/`` / ``CIFAR-100-C/`` with ``<corruption>.npy`` and
  ``labels.npy``; 19 corruptions x 5 severities of the 10k test images (``cifar_c``).
- ``npz:<path>``: one ``.npz`` file with ``x_train, y_train, x_test, y_test`` (and ``classes``)
  (``npz``).
- ``digits``: scikit-learn's bundled digits, upsampled 8 -> 32 px; 1297/500; no files needed
  (``digits``).

All use CIFAR's normalisation (mean = std = 0.5) except ``tinyimagenet`` (ImageNet's) and
``npz`` (ImageNet's for 64x64 images, CIFAR's otherwise).

``cifar10-c:<folder>`` / ``cifar100-c:<folder>`` read the ``.npy`` files from that folder instead
of ``<root>/CIFAR-10-C`` (so generated corruption sets can live anywhere). Paths in names resolve
against the current directory.

Data root (where on-disk datasets are looked for, :func:`data_root`): the ``root`` argument, else
the environment variable ``SHARPKIT_DATA``, else ``~/.cache/sharpkit/data``. ``digits`` needs no
data at all (it ships with scikit-learn), so it is the offline default.

New datasets are added with :func:`register_dataset`; :data:`DATASETS` maps each name to its
:class:`DatasetSpec`. This module holds the registry and registers the formats' loaders (the formats
know nothing of it); the loaders and constants of the formats are importable from here as well.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..utils.validation import check_choice
from .base import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptedImageDataset,
    ImageDataset,
)
from .dataset_names import parse_dataset_name

# The formats, one module each under formats/ (registered at the end of this file); their public loaders and
# constants stay importable from here. Their private helpers live (and are patched, in tests) in their module.
from .formats._common import (
    DATA_ROOT_ENV,
    DEFAULT_DATA_ROOT,
    data_root,
)
from .formats.cifar import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    load_cifar10,
    load_cifar100,
)
from .formats.cifar_c import (
    CIFAR_C_CORRUPTIONS,
    load_cifar10_c,
    load_cifar100_c,
)
from .formats.digits import (
    DIGITS_SEED,
    DIGITS_TEST_SIZE,
    load_digits,
)
from .formats.npz import (
    load_npz,
)
from .formats.tinyimagenet import (
    load_tinyimagenet,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR_C_CORRUPTIONS",
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEFAULT_DATA_ROOT",
    "DIGITS_SEED",
    "DIGITS_TEST_SIZE",
    "DatasetSpec",
    "data_root",
    "list_datasets",
    "load_cifar10",
    "load_cifar100",
    "load_cifar100_c",
    "load_cifar10_c",
    "load_clean",
    "load_corrupted",
    "load_dataset",
    "load_digits",
    "load_npz",
    "load_tinyimagenet",
    "register_dataset",
]

AnyDataset = ImageDataset | CorruptedImageDataset
Normalisation = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

DatasetLoader = Callable[[Path, bool, str | None], AnyDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one dataset name.

    Attributes:
        name: the registered name (lower case, no ``:``).
        loader: ``loader(root, download, path)`` -> the dataset; ``root`` is the resolved data root
            (:func:`data_root`), ``path`` the text after ``name:`` (``None`` without one).
        num_classes, image_size: ``None`` where they depend on the file (``npz``).
        mean, std: per-channel normalisation on the 0-1 scale; ``None`` where it depends on the
            file.
        description: one line for listings.
        corrupted: whether the loader returns a :class:`CorruptedImageDataset`.
        path: whether the name takes a ``name:<path>`` suffix: ``"none"``, ``"optional"`` or
            ``"required"``.
    """

    name: str
    loader: DatasetLoader
    num_classes: int | None
    image_size: int | None
    mean: Normalisation | None
    std: Normalisation | None
    description: str
    corrupted: bool = False
    path: Literal["none", "optional", "required"] = "none"


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    num_classes: int | None,
    image_size: int | None,
    mean: Normalisation | None,
    std: Normalisation | None,
    description: str,
    corrupted: bool = False,
    path: Literal["none", "optional", "required"] = "none",
) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator adding ``loader(root: Path, download: bool, path: str | None)`` under ``name``.

    Re-registering a name replaces the previous entry with a warning (as timm's model registry
    does), so a notebook cell can be re-run.
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.strip().lower():
        raise ValueError(
            f"Expected argument `name` to be a non-empty lower-case string without ':' or "
            f"surrounding spaces, but got {name!r}."
        )
    check_choice("path", path, ("none", "optional", "required"))

    def decorator(loader: DatasetLoader) -> DatasetLoader:
        if name in DATASETS:
            warnings.warn(f"Dataset {name!r} was already registered; replacing it.", stacklevel=2)
        DATASETS[name] = DatasetSpec(
            name=name,
            loader=loader,
            num_classes=num_classes,
            image_size=image_size,
            mean=mean,
            std=std,
            description=description,
            corrupted=corrupted,
            path=path,
        )
        return loader

    return decorator


def list_datasets() -> tuple[str, ...]:
    """The registered dataset names, in registration order."""
    return tuple(DATASETS)


def _name_forms() -> str:
    plain = [repr(n) for n, s in DATASETS.items() if s.path != "required"]
    forms = [repr(f"{n}:<path>") for n, s in DATASETS.items() if s.path != "none"]
    return f"{', '.join(plain)}, or one of the forms {', '.join(forms)}"


def load_dataset(
    name: str, root: str | os.PathLike | None = None, download: bool = False
) -> AnyDataset:
    """Load a registered dataset by name (see the module docstring for the names and layouts).

    Args:
        name: a registered name (case-insensitive), or ``"<name>:<path>"`` for the names that take
            a path (``npz:data/my.npz``, ``cifar10-c:/some/dir``).
        root: data root; ``None`` means ``$SHARPKIT_DATA``, else ``~/.cache/sharpkit/data``.
        download: fetch missing on-disk data from its official host where that is possible.

    Raises:
        ValueError: an unknown name, or a path given to a name that takes none (or missing where
            required).
        FileNotFoundError: the data is not on disk (the message says where it looked).
    """
    if not isinstance(name, str):
        raise ValueError(f"Expected argument `name` to be a string, but got {name!r}.")
    if not isinstance(download, bool):
        raise ValueError(f"Expected argument `download` to be True or False, but got {download!r}.")
    try:
        parsed = parse_dataset_name(name)
    except ValueError:  # an empty name: the message lists the registered ones
        parsed = None
    spec = None if parsed is None else DATASETS.get(parsed.base)
    if parsed is None or spec is None:
        raise ValueError(f"Expected a dataset name among {_name_forms()}, but got {name!r}.")
    base = parsed.base
    if parsed.has_colon and spec.path == "none":
        raise ValueError(
            f"Dataset {base!r} takes no path, but got {name!r}. Pass {base!r} and put the data "
            f"under the data root instead."
        )
    if spec.path == "required" and parsed.path is None:
        raise ValueError(
            f"Dataset {base!r} needs a file: pass {base + ':<path>'!r}, but got {name!r}."
        )
    dataset = spec.loader(data_root(root), download, parsed.path)
    if not isinstance(dataset, (ImageDataset, CorruptedImageDataset)):
        raise TypeError(
            f"The loader registered for {base!r} returned {type(dataset).__name__}; it must "
            f"return an ImageDataset or a CorruptedImageDataset."
        )
    return dataset


def load_clean(name: str, root: str | os.PathLike | None = None, download: bool = False) -> ImageDataset:
    """:func:`load_dataset` for a dataset with train and test splits (an :class:`ImageDataset`): what
    training and evaluating a run need. The name of a corrupted test set raises ``ValueError``."""
    dataset = load_dataset(name, root=root, download=download)
    if not isinstance(dataset, ImageDataset):
        raise ValueError(
            f"Expected the name of a dataset with train and test splits, but got {name!r}, which is a "
            f"corrupted test set; it is measured by `sharpkit evaluate --corrupted {name}`."
        )
    return dataset


def load_corrupted(
    name: str, root: str | os.PathLike | None = None, download: bool = False
) -> CorruptedImageDataset:
    """:func:`load_dataset` for a corrupted test set (a :class:`CorruptedImageDataset`, e.g.
    ``cifar10-c``). The name of a clean dataset raises ``ValueError``."""
    dataset = load_dataset(name, root=root, download=download)
    if not isinstance(dataset, CorruptedImageDataset):
        raise ValueError(
            f"Expected a corrupted dataset name such as 'cifar10-c', but got {name!r}, which is a clean dataset."
        )
    return dataset


# --------------------------------------------------------------------------------------------
# Registered names: the loaders of formats/, in the order list_datasets() gives them
# --------------------------------------------------------------------------------------------


@register_dataset(
    "cifar10", num_classes=10, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
    description="CIFAR-10, 50k train / 10k test, 32x32, 10 classes (cifar-10-batches-py/)",
)  # fmt: skip
def _cifar10_entry(root: Path, download: bool, path: str | None) -> ImageDataset:
    return load_cifar10(root, download)


@register_dataset(
    "cifar100", num_classes=100, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
    description="CIFAR-100 (fine labels), 50k train / 10k test, 32x32 (cifar-100-python/)",
)  # fmt: skip
def _cifar100_entry(root: Path, download: bool, path: str | None) -> ImageDataset:
    return load_cifar100(root, download)


@register_dataset(
    "tinyimagenet", num_classes=200, image_size=64, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    description="TinyImageNet, 100k train / 10k val as test, 64x64, 200 classes "
    "(tiny-imagenet-200/)",
)  # fmt: skip
def _tinyimagenet_entry(root: Path, download: bool, path: str | None) -> ImageDataset:
    return load_tinyimagenet(root, download)


@register_dataset(
    "cifar10-c", num_classes=10, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
    description="CIFAR-10-C, 19 corruptions x 5 severities of the test set "
    "(CIFAR-10-C/ or 'cifar10-c:<folder>')",
    corrupted=True, path="optional",
)  # fmt: skip
def _cifar10_c_entry(root: Path, download: bool, path: str | None) -> CorruptedImageDataset:
    return load_cifar10_c(root, download, folder=path)


@register_dataset(
    "cifar100-c", num_classes=100, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
    description="CIFAR-100-C, 19 corruptions x 5 severities of the test set "
    "(CIFAR-100-C/ or 'cifar100-c:<folder>')",
    corrupted=True, path="optional",
)  # fmt: skip
def _cifar100_c_entry(root: Path, download: bool, path: str | None) -> CorruptedImageDataset:
    return load_cifar100_c(root, download, folder=path)


@register_dataset(
    "npz", num_classes=None, image_size=None, mean=None, std=None,
    description="one .npz file with x_train, y_train, x_test, y_test (and classes): 'npz:<path>'",
    path="required",
)  # fmt: skip
def _npz_entry(root: Path, download: bool, path: str | None) -> ImageDataset:
    if path is None:  # load_dataset already refuses this; kept for direct calls
        raise ValueError("Expected a file: pass 'npz:<path to an .npz>'.")
    return load_npz(path)


@register_dataset(
    "digits", num_classes=10, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
    description="scikit-learn's digits upsampled to 32x32 RGB, 1297 train / 500 test, "
    "no files needed",
)  # fmt: skip
def _digits_entry(root: Path, download: bool, path: str | None) -> ImageDataset:
    return load_digits()
