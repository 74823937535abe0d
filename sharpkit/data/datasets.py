"""The dataset registry: a name -> the whole dataset in memory as uint8 tensors.

Every loader returns an :class:`~sharpkit.data.base.ImageDataset` (train + test split) or, for the
corruption benchmarks, a :class:`~sharpkit.data.base.CorruptedImageDataset`; images are uint8
(N, 3, H, W), labels int64. Normalisation is *not* applied here: each dataset carries the mean/std
the protocol uses for it (the authors' code, GitHub
``IFMW01/a_function-centric_perspective_on_flat_and_sharp_minima`` at commit 20e3acc; the book's
protocol page, "Design", lists them).

Registered names (``list_datasets()``), with the on-disk layout under the data root:

- ``cifar10``: ``cifar-10-batches-py/`` (torchvision's pickles); 50k/10k, 32 px, 10 classes.
- ``cifar100``: ``cifar-100-python/`` (fine labels); 50k/10k, 32 px, 100 classes.
- ``tinyimagenet``: ``tiny-imagenet-200/``; 100k/10k (test = the labelled val split), 64 px,
  200 classes, ImageNet normalisation.
- ``cifar10-c``, ``cifar100-c``: ``CIFAR-10-C/`` / ``CIFAR-100-C/`` with ``<corruption>.npy`` and
  ``labels.npy``; 19 corruptions x 5 severities of the 10k test images.
- ``npz:<path>``: one ``.npz`` file with ``x_train, y_train, x_test, y_test`` (and ``classes``).
- ``digits``: scikit-learn's bundled digits, upsampled 8 -> 32 px; 1297/500; no files needed.

All use CIFAR's normalisation (mean = std = 0.5) except ``tinyimagenet`` (ImageNet's) and
``npz`` (ImageNet's for 64x64 images, CIFAR's otherwise).

``cifar10-c:<folder>`` / ``cifar100-c:<folder>`` read the ``.npy`` files from that folder instead
of ``<root>/CIFAR-10-C`` (so generated corruption sets can live anywhere). Paths in names resolve
against the current directory.

Data root (where on-disk datasets are looked for, :func:`data_root`): the ``root`` argument, else
the environment variable ``SHARPKIT_DATA``, else ``~/.cache/sharpkit/data``. ``digits`` needs no
data at all (it ships with scikit-learn), so it is the offline default.

New datasets are added with :func:`register_dataset`; :data:`DATASETS` maps each name to its
:class:`DatasetSpec`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.io import TEMP_SUFFIX, atomic_path, remove_stale_temp_files
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

DATA_ROOT_ENV = "SHARPKIT_DATA"
DEFAULT_DATA_ROOT = "~/.cache/sharpkit/data"

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The fine label names of CIFAR-100 in label order (alphabetical), as in its `meta` file.
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

# The 19 corruptions of CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019): the 15
# benchmark corruptions followed by the 4 extra ones the protocol also averages over.
CIFAR_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip

# The digits split is part of the dataset's definition: change either and results change.
DIGITS_TEST_SIZE = 500
DIGITS_SEED = 0

_DIGITS_SIZE = 32
_TINY_SIZE = 64


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


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder on-disk datasets are looked for in, as an absolute path (it may not exist).

    Order: ``root`` if given, else ``$SHARPKIT_DATA`` if set and non-empty, else
    ``~/.cache/sharpkit/data``. ``~`` is expanded; relative paths resolve against the current
    directory.
    """
    if root is None:
        root = os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return _absolute(root)


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current directory (no symlinks)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _where_help(root: Path) -> str:
    return (
        f"The data root was {root} (from --data-root, or `root` in Python, else ${DATA_ROOT_ENV}, "
        f"else {DEFAULT_DATA_ROOT}); pass --data-root or set ${DATA_ROOT_ENV} to look elsewhere."
    )


def _provide_help(name: str, url: str, folder: str, root: Path) -> str:
    # The command line has no download option: fetching stays an explicit step in Python.
    return (
        f"To provide it, extract {url} so that the folder {folder}/ lies in the data root, or "
        f"fetch it from Python with load_dataset({name!r}, download=True). {_where_help(root)}"
    )


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Expected labels in 0..{num_classes - 1} in {where}, but found values from "
            f"{labels.min()} to {labels.max()}."
        )


def _fetch(title: str, folder: str, root: Path, fetch: Callable[[], Any]) -> None:
    """Run a download; turn its failure into one message that says what to do offline."""
    try:
        fetch()
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; bad checksums RuntimeError
        raise RuntimeError(
            f"Could not download {title} into {root} ({type(exc).__name__}: {exc}). If this "
            f"machine is offline, copy the extracted {folder}/ folder into {root} by hand, or set "
            f"${DATA_ROOT_ENV} to a folder that holds it."
        ) from exc


def _download_archive(url: str, root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    # No checksum is pinned (none could be verified offline when this was written); the loaders
    # validate every array's shape and dtype instead.
    download_and_extract_archive(url, download_root=str(root))


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (torchvision's on-disk layout, read directly)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarLayout:
    name: str
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    url: str
    torchvision_class: str


_CIFAR10_LAYOUT = _CifarLayout(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    torchvision_class="CIFAR10",
)
_CIFAR100_LAYOUT = _CifarLayout(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    torchvision_class="CIFAR100",
)


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global a CIFAR batch never names, or called a stand-in as a CIFAR batch
    never does; its text is the call."""


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Stands in for ``_codecs.encode``: Python 3 pickles bytes with it under protocols 0-2."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _RefusedGlobal(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """Stands in for ``bytes``: Python 3 pickles ``b""`` as ``bytes()`` under protocols 0-2."""
    return b""


# Every global a CIFAR batch may name, found by recording ``find_class`` while loading batches
# pickled by Python 2's cPickle (the official archives: numpy 1's module names, Python 2 str for
# bytes) and by Python 3 with protocols 0-5 (numpy 2's names; bytes through _codecs.encode or
# bytes(); protocol 5 arrays through _frombuffer). The rest of a batch is dicts, lists, str, bytes,
# ints and floats, which pickle builds without naming a global. The numpy callables only build
# arrays, dtypes and scalars from the file's bytes; the builtins get stand-ins that do only that.
_CIFAR_NUMPY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((f"{core}.multiarray", name) for core in ("numpy.core", "numpy._core")
      for name in ("_reconstruct", "scalar")),
    *((f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")),
})  # fmt: skip
_CIFAR_STAND_INS: dict[tuple[str, str], Callable[..., bytes]] = {
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,  # protocol 2 names Python 3's builtins as Python 2's
    ("builtins", "bytes"): _empty_bytes,
}


class _CifarUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that builds only what a CIFAR batch holds (see the globals above).

    A plain ``pickle.load`` calls whatever a file names (``os.system`` included) before anything
    can check it; here a global outside the lists stops the load before it is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_STAND_INS:
            return _CIFAR_STAND_INS[module, name]
        if (module, name) in _CIFAR_NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"{module}.{name}")


def _unpickle(path: Path, layout: _CifarLayout) -> dict[str, Any]:
    fix = f"Replace it with the file from the official archive {layout.url}."
    try:
        with open(path, "rb") as f:
            # The official files are Python 2 pickles: latin1 is the encoding numpy documents for
            # them. Keys come back as str (official files) or bytes (pickled by Python 3).
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as refused:
        raise ValueError(
            f"Refused to load {path}: it asks to call {refused}, which a CIFAR batch never does "
            f"(it holds only dicts, lists, strings, bytes, numbers and numpy arrays), so it is not "
            f"a genuine CIFAR batch; the load stopped before that call. {fix}"
        ) from None
    except (OSError, MemoryError):
        raise  # about the disk or this machine, not the file's bytes; their messages say so
    except Exception as exc:  # a cut or garbled file raises any of a dozen types mid-way
        raise ValueError(
            f"{path} is damaged: reading it as a CIFAR batch stopped with {type(exc).__name__}: "
            f"{exc}. It was probably cut short while being downloaded, extracted or copied. {fix}"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(
            f"Expected {path} to hold a pickled dict, but found {type(obj).__name__}. {fix}"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _pickle_entry(entry: dict[str, Any], key: str, path: Path) -> Any:
    if key not in entry:
        raise ValueError(
            f"Expected key {key!r} in the CIFAR pickle {path}, but found keys {sorted(entry)}."
        )
    return entry[key]


def _read_cifar_batches(
    folder: Path, files: tuple[str, ...], layout: _CifarLayout
) -> tuple[np.ndarray, np.ndarray]:
    label_key = layout.label_key
    images, labels = [], []
    for file in files:
        path = folder / file
        entry = _unpickle(path, layout)
        data = np.asarray(_pickle_entry(entry, "data", path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(
                f"Expected 'data' in {path} as uint8 rows of 3072 values (N, 3072), but found "
                f"dtype {data.dtype} and shape {data.shape}."
            )
        y = np.asarray(_pickle_entry(entry, label_key, path), dtype=np.int64)
        if y.shape != (data.shape[0],):
            raise ValueError(
                f"Expected {data.shape[0]} labels under {label_key!r} in {path}, but found shape "
                f"{y.shape}."
            )
        images.append(data)
        labels.append(y)
    # Each row is the red, green then blue 32x32 plane, row-major: that is (3, 32, 32) = CHW.
    return np.concatenate(images).reshape(-1, 3, 32, 32), np.concatenate(labels)


def _load_cifar(
    layout: _CifarLayout, root: str | os.PathLike | None, download: bool
) -> ImageDataset:
    root = data_root(root)
    folder = root / layout.folder
    expected = (*layout.train_files, *layout.test_files, layout.meta_file)

    def missing() -> list[str]:
        return [f for f in expected if not (folder / f).is_file()]

    if missing() and download:
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, layout.torchvision_class)
        # One call fetches and extracts the whole archive (both splits); the arrays are then read
        # below, without torchvision's per-sample Dataset.
        _fetch(
            layout.title,
            layout.folder,
            root,
            lambda: dataset_class(root=str(root), train=True, download=True),
        )
    absent = missing()
    if absent:
        raise FileNotFoundError(
            f"{layout.title} not found: looked for {', '.join(absent)} in {folder}. "
            f"{_provide_help(layout.name, layout.url, layout.folder, root)}"
        )
    x_train, y_train = _read_cifar_batches(folder, layout.train_files, layout)
    x_test, y_test = _read_cifar_batches(folder, layout.test_files, layout)
    meta_path = folder / layout.meta_file
    names = _pickle_entry(_unpickle(meta_path, layout), layout.names_key, meta_path)
    classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    _check_labels(y_train, len(classes), f"{folder} (train)")
    _check_labels(y_test, len(classes), f"{folder} (test)")
    return ImageDataset(
        name=layout.name,
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        classes=classes,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
    )


def load_cifar10(root: str | os.PathLike | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test 32x32 images, 10 classes.

    Reads ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (the pickles
    of the official python archive, as torchvision extracts it). ``download=True`` fetches the
    archive with ``torchvision.datasets.CIFAR10`` when files are missing. Normalisation: mean =
    std = 0.5 per channel (protocol).
    """
    return _load_cifar(_CIFAR10_LAYOUT, root, download)


def load_cifar100(root: str | os.PathLike | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-100 (Krizhevsky 2009) with its 100 fine labels: 50,000 train / 10,000 test images.

    Reads ``<root>/cifar-100-python/{train, test, meta}`` (keys ``fine_labels`` and
    ``fine_label_names``). Download and normalisation as :func:`load_cifar10`.
    """
    return _load_cifar(_CIFAR100_LAYOUT, root, download)


# --------------------------------------------------------------------------------------------
# TinyImageNet (tiny-imagenet-200 layout, decoded once into a cache)
# --------------------------------------------------------------------------------------------

_TINY_FOLDER = "tiny-imagenet-200"
_TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_TINY_CACHE = "sharpkit-cache.npz"
_TINY_CACHE_VERSION = 1
_TINY_REQUIRED = ("wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt")
_JPEG_SUFFIXES = (".jpeg", ".jpg")


@dataclass(frozen=True)
class _TinyArrays:
    x_train: np.ndarray  # (N, 3, 64, 64) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def _read_wnids(path: Path) -> list[str]:
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    duplicates = sorted({w for w in wnids if wnids.count(w) > 1})
    if not wnids or duplicates:
        raise ValueError(
            f"Expected {path} to list distinct class ids (wnids), one per line, but found "
            f"{len(wnids)} lines" + (f" with duplicates {duplicates}." if duplicates else ".")
        )
    return wnids


def _read_class_names(path: Path, wnids: Sequence[str]) -> tuple[str, ...]:
    """First synonym of each wnid in ``words.txt`` (``wnid<TAB>name, other name, ...``)."""
    wanted = set(wnids)
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        wnid, _, words = line.partition("\t")
        if wnid in wanted:
            names[wnid] = words.split(",")[0].strip()
    # words.txt covers all of WordNet's ImageNet synsets; should one be absent, the id is a name.
    return tuple(names.get(w) or w for w in wnids)


def _tiny_files(
    folder: Path, wnids: Sequence[str]
) -> tuple[list[Path], list[int], list[Path], list[int]]:
    """Train and val JPEG paths with their labels (indices into ``wnids``)."""
    train_files: list[Path] = []
    train_labels: list[int] = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        files = sorted(p for p in images.glob("*") if p.suffix.lower() in _JPEG_SUFFIXES)
        if not files:
            raise FileNotFoundError(
                f"Expected the training JPEGs of class {wnid} (listed in wnids.txt) in {images}, "
                f"but found none."
            )
        train_files += files
        train_labels += [label] * len(files)
    index = {w: i for i, w in enumerate(wnids)}
    annotations = folder / "val" / "val_annotations.txt"
    test_files: list[Path] = []
    test_labels: list[int] = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise ValueError(
                f"Expected line {number} of {annotations} to read '<file>\\t<wnid>\\t...' with a "
                f"wnid from wnids.txt, but found {line!r}."
            )
        path = folder / "val" / "images" / fields[0].strip()
        if not path.is_file():
            raise FileNotFoundError(
                f"Line {number} of {annotations} names {path}, which does not exist."
            )
        test_files.append(path)
        test_labels.append(index[fields[1].strip()])
    if not test_files:
        raise ValueError(
            f"Expected {annotations} to annotate the validation images, but it is empty."
        )
    return train_files, train_labels, test_files, test_labels


def _decode_jpegs(files: Sequence[Path], progress: Any) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(files), 3, _TINY_SIZE, _TINY_SIZE), dtype=np.uint8)
    for i, path in enumerate(files):
        with Image.open(path) as image:
            # A few TinyImageNet JPEGs are grayscale: convert gives every image 3 channels.
            rgb = image.convert("RGB")
        if rgb.size != (_TINY_SIZE, _TINY_SIZE):
            raise ValueError(
                f"Expected {_TINY_SIZE}x{_TINY_SIZE} TinyImageNet images, but {path} is "
                f"{rgb.size[0]}x{rgb.size[1]}."
            )
        out[i] = np.asarray(rgb).transpose(2, 0, 1)
        progress.update(1)
    return out


def _decode_tiny(folder: Path, wnids: Sequence[str]) -> _TinyArrays:
    from tqdm import tqdm

    train_files, train_labels, test_files, test_labels = _tiny_files(folder, wnids)
    total = len(train_files) + len(test_files)
    with tqdm(total=total, desc=f"Decoding {folder.name}", unit="img") as progress:
        x_train = _decode_jpegs(train_files, progress)
        x_test = _decode_jpegs(test_files, progress)
    return _TinyArrays(
        x_train=x_train,
        y_train=np.asarray(train_labels, dtype=np.int64),
        x_test=x_test,
        y_test=np.asarray(test_labels, dtype=np.int64),
    )


def _tiny_fingerprint(folder: Path, wnids: Sequence[str]) -> str:
    """A digest of the modification times that date the data, stored in and checked by the cache.

    Adding, removing or renaming an image changes the mtime of the folder that holds it, so the
    image folders plus the text files date the data. Comparing a stored digest rather than
    "cache newer than data" keeps working with skewed clocks and with data replaced by an older
    copy.
    """
    paths = [*_TINY_REQUIRED, *(f"train/{w}/images" for w in wnids)]
    stamps = "\n".join(f"{p}\t{(folder / p).stat().st_mtime_ns}" for p in paths)
    return hashlib.sha256(stamps.encode()).hexdigest()


def _read_tiny_cache(path: Path, wnids: Sequence[str], fingerprint: str) -> _TinyArrays | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            if (
                int(cache["version"]) != _TINY_CACHE_VERSION
                or str(cache["fingerprint"]) != fingerprint
                or list(cache["wnids"]) != list(wnids)
            ):
                return None
            return _TinyArrays(
                x_train=cache["x_train"],
                y_train=cache["y_train"],
                x_test=cache["x_test"],
                y_test=cache["y_test"],
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # unreadable (e.g. an interrupted copy): decode again and overwrite it


def _write_tiny_cache(
    path: Path, arrays: _TinyArrays, wnids: Sequence[str], fingerprint: str
) -> None:
    # Through the package's one atomic writer: an interrupted run never leaves a half cache, and a
    # temporary file left by a killed writer is removed next time.
    try:
        remove_stale_temp_files(path.parent, pattern=f"{path.name}.*{TEMP_SUFFIX}")  # named as before
        with atomic_path(path) as temporary, open(temporary, "wb") as f:
            np.savez(
                f,
                version=np.int64(_TINY_CACHE_VERSION),
                fingerprint=np.asarray(fingerprint),
                wnids=np.asarray(wnids, dtype=str),
                x_train=arrays.x_train,
                y_train=arrays.y_train,
                x_test=arrays.x_test,
                y_test=arrays.y_test,
            )
    except OSError as exc:
        warnings.warn(
            f"Could not write the TinyImageNet cache {path} ({exc}); the JPEGs will be decoded "
            f"again next time.",
            stacklevel=3,
        )


def load_tinyimagenet(
    root: str | os.PathLike | None = None, download: bool = False, cache: bool = True
) -> ImageDataset:
    """TinyImageNet (Stanford CS231n): 200 classes of 64x64 RGB images, 100,000 train / 10,000 test.

    Layout under ``<root>/tiny-imagenet-200/``: ``wnids.txt`` (the 200 class ids),
    ``words.txt`` (class names: the first synonym of each id), ``train/<wnid>/images/*.JPEG`` and
    ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>bbox``).
    The labelled val split is the test split (the official test split has no labels). Labels
    index the *sorted* wnids, as torchvision's ImageFolder and the Hugging Face copy the
    protocol's code loads order them. Grayscale JPEGs are converted to RGB.

    Decoding the 110,000 JPEGs takes a while, so the arrays are cached in
    ``tiny-imagenet-200/sharpkit-cache.npz`` (about 1.35 GB, uncompressed) and reused while the
    modification times of ``wnids.txt``, ``words.txt``, the annotations and every image folder
    are those recorded in it (adding, removing or renaming an image dates its folder; editing a
    JPEG in place does not: delete the cache then).
    ``cache=False`` neither reads nor writes it. ``download=True`` fetches the official zip when
    the folder is missing. Normalisation: ImageNet mean/std (protocol).
    """
    root = data_root(root)
    folder = root / _TINY_FOLDER

    def missing() -> list[str]:
        return [p for p in _TINY_REQUIRED if not (folder / p).exists()]

    if missing() and download:
        _fetch("TinyImageNet", _TINY_FOLDER, root, lambda: _download_archive(_TINY_URL, root))
    absent = missing()
    if absent:
        raise FileNotFoundError(
            f"TinyImageNet not found: looked for {', '.join(absent)} in {folder}. "
            f"{_provide_help('tinyimagenet', _TINY_URL, _TINY_FOLDER, root)}"
        )
    wnids = sorted(_read_wnids(folder / "wnids.txt"))
    classes = _read_class_names(folder / "words.txt", wnids)
    cache_path = folder / _TINY_CACHE
    # Taken before decoding, so a change made while decoding invalidates the cache next time.
    fingerprint = _tiny_fingerprint(folder, wnids) if cache else ""
    arrays = _read_tiny_cache(cache_path, wnids, fingerprint) if cache else None
    if arrays is None:
        arrays = _decode_tiny(folder, wnids)
        if cache:
            _write_tiny_cache(cache_path, arrays, wnids, fingerprint)
    return ImageDataset(
        name="tinyimagenet",
        x_train=torch.from_numpy(arrays.x_train),
        y_train=torch.from_numpy(arrays.y_train),
        x_test=torch.from_numpy(arrays.x_test),
        y_test=torch.from_numpy(arrays.y_test),
        classes=classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10-C / CIFAR-100-C (one .npy per corruption, 5 severities stacked)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarCLayout:
    name: str
    title: str
    folder: str
    classes: tuple[str, ...]
    url: str


_CIFAR10_C_LAYOUT = _CifarCLayout(
    "cifar10-c", "CIFAR-10-C", "CIFAR-10-C", CIFAR10_CLASSES,
    "https://zenodo.org/record/2535967/files/CIFAR-10-C.tar",
)  # fmt: skip
_CIFAR100_C_LAYOUT = _CifarCLayout(
    "cifar100-c", "CIFAR-100-C", "CIFAR-100-C", CIFAR100_CLASSES,
    "https://zenodo.org/record/3555552/files/CIFAR-100-C.tar",
)  # fmt: skip


def _check_corruption_names(corruptions: Sequence[str] | None) -> tuple[str, ...] | None:
    if corruptions is None:
        return None
    if isinstance(corruptions, str) or not isinstance(corruptions, Sequence) or not corruptions:
        raise ValueError(
            f"Expected argument `corruptions` to be None or a non-empty list of corruption names "
            f"(e.g. ['fog']), but got {corruptions!r}."
        )
    for corruption in corruptions:
        check_choice("corruptions", corruption, CIFAR_C_CORRUPTIONS)
    return tuple(dict.fromkeys(corruptions))  # drop repeats, keep order


def _load_cifar_c(
    layout: _CifarCLayout,
    root: str | os.PathLike | None,
    download: bool,
    corruptions: Sequence[str] | None,
    folder: str | os.PathLike | None,
) -> CorruptedImageDataset:
    requested = _check_corruption_names(corruptions)
    root = data_root(root)
    directory = _absolute(folder) if folder is not None else root / layout.folder
    name = layout.name if folder is None else f"{layout.name}:{os.fspath(folder)}"

    def present() -> list[str]:
        return [c for c in CIFAR_C_CORRUPTIONS if (directory / f"{c}.npy").is_file()]

    def complete() -> bool:
        have = present()
        wanted = requested if requested is not None else have
        return (directory / "labels.npy").is_file() and bool(have) and set(wanted) <= set(have)

    if not complete() and download:
        if folder is not None:
            raise FileNotFoundError(
                f"{layout.title} data is incomplete in {directory}; download=True only fetches "
                f"into the data root: use the name {layout.name!r} instead of {name!r}."
            )
        _fetch(layout.title, layout.folder, root, lambda: _download_archive(layout.url, root))
    available = present()
    labels_path = directory / "labels.npy"
    if not labels_path.is_file() or not available:
        looked_for = [] if labels_path.is_file() else ["labels.npy"]
        if not available:
            looked_for.append("<corruption>.npy files (gaussian_noise.npy, ...)")
        if folder is None:
            provide = _provide_help(layout.name, layout.url, layout.folder, root)
        else:
            provide = "Put the <corruption>.npy files and labels.npy in that folder."
        raise FileNotFoundError(
            f"{layout.title} not found: looked for {' and '.join(looked_for)} in {directory}. "
            f"{provide}"
        )
    selected = requested if requested is not None else tuple(available)
    absent = [c for c in selected if c not in available]
    if absent:
        raise FileNotFoundError(
            f"{layout.title} in {directory} lacks the requested corruptions {absent} (found "
            f"{available}). Pass `corruptions` among those found, or add the missing .npy files."
        )

    fix = f"Extract {layout.url} again, or write a generated set again with `sharpkit corrupt`."
    labels = _load_npy(labels_path, fix)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected {labels_path} to hold integer labels of shape (5 * N,), but found dtype "
            f"{labels.dtype} and shape {labels.shape}."
        )
    images: dict[str, torch.Tensor] = {}
    for corruption in selected:
        path = directory / f"{corruption}.npy"
        # Memory-mapped so that only the selected corruptions are ever read (each real file is
        # 150 MB); the copy below is the one that ends in the tensor.
        data = _load_npy(path, fix, mmap_mode="r")
        if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
            raise ValueError(
                f"Expected {path} as uint8 images of shape (5 * N, H, W, 3), but found dtype "
                f"{data.dtype} and shape {data.shape}."
            )
        rows = data.shape[0]
        if rows % 5 or rows == 0:
            raise ValueError(
                f"Expected the rows of {path} to be 5 severities x N images (a positive multiple "
                f"of 5), but it has {rows} rows."
            )
        n = rows // 5
        if len(labels) not in (rows, n):
            raise ValueError(
                f"Expected {path} to match labels.npy ({len(labels)} labels: 5 severities x "
                f"{len(labels) // 5} images, or one label per image), but it has {rows} rows = "
                f"5 x {n} images."
            )
        if images and n != next(iter(images.values())).shape[1]:
            raise ValueError(
                f"Expected every corruption in {directory} to hold the same number of images, "
                f"but {path.name} holds 5 x {n} and {next(iter(images))}.npy 5 x "
                f"{next(iter(images.values())).shape[1]}."
            )
        # (5 * N, H, W, 3) -> (severity, N, 3, H, W); row (s - 1) * N + i is image i at severity s.
        per_severity = data.reshape(5, n, *data.shape[1:]).transpose(0, 1, 4, 2, 3)
        images[corruption] = torch.from_numpy(np.ascontiguousarray(per_severity))
    n_images = next(iter(images.values())).shape[1]
    if len(labels) == 5 * n_images:
        blocks = labels.reshape(5, n_images)
        if not (blocks == blocks[0]).all():
            raise ValueError(
                f"Expected labels.npy in {directory} to repeat the same {n_images} labels for "
                f"each of the 5 severities, but the blocks differ."
            )
        labels = blocks[0]
    labels = labels.astype(np.int64)
    _check_labels(labels, len(layout.classes), str(labels_path))
    return CorruptedImageDataset(
        name=name,
        images=images,
        labels=torch.from_numpy(labels),
        classes=layout.classes,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
    )


_NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every file np.save writes


def _load_npy(path: Path, fix: str, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """``np.load`` of one array, with our own errors: numpy's for a file that is no .npy advises
    allow_pickle=True (which would run code from it), and a cut one gets no file name."""
    with open(path, "rb") as handle:
        is_npy = handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC
    if not is_npy:
        raise ValueError(f"Expected {path} to be a .npy array (np.save), but it is not one. {fix}")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError) as exc:  # header or data shorter than the header says
        raise ValueError(
            f"{path} is damaged ({exc}); it was probably cut short while being written or copied. "
            f"{fix}"
        ) from exc


def load_cifar10_c(
    root: str | os.PathLike | None = None,
    download: bool = False,
    corruptions: Sequence[str] | None = None,
    folder: str | os.PathLike | None = None,
) -> CorruptedImageDataset:
    """CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): the CIFAR-10 test set under 19 corruptions.

    Reads ``<folder>/<corruption>.npy`` (uint8 (5 N, 32, 32, 3): severity s is rows
    (s - 1) N .. s N - 1, N = 10,000 for the real data, derived from the row count here) and
    ``labels.npy`` (5 N labels, the N test labels once per severity; N labels also accepted).
    ``folder`` defaults to ``<root>/CIFAR-10-C``. ``corruptions`` selects a subset of
    :data:`CIFAR_C_CORRUPTIONS`; ``None`` loads every one of them the folder holds (the result's
    ``corruptions`` says which); other ``.npy`` names are ignored. ``download=True`` fetches the
    Zenodo archive (record 2535967) into the data root. Normalisation as clean CIFAR (0.5).
    """
    return _load_cifar_c(_CIFAR10_C_LAYOUT, root, download, corruptions, folder)


def load_cifar100_c(
    root: str | os.PathLike | None = None,
    download: bool = False,
    corruptions: Sequence[str] | None = None,
    folder: str | os.PathLike | None = None,
) -> CorruptedImageDataset:
    """CIFAR-100-C: as :func:`load_cifar10_c`, from ``<root>/CIFAR-100-C`` (Zenodo 3555552)."""
    return _load_cifar_c(_CIFAR100_C_LAYOUT, root, download, corruptions, folder)


# --------------------------------------------------------------------------------------------
# npz:<path>
# --------------------------------------------------------------------------------------------

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(array: np.ndarray, key: str, file: Path) -> np.ndarray:
    expected = "uint8 images of shape (N, H, W, 3) (NHWC) or (N, 3, H, W) (NCHW)"
    if array.dtype != np.uint8 or array.ndim != 4 or 3 not in (array.shape[1], array.shape[-1]):
        hint = ""
        if array.dtype != np.uint8 and array.ndim == 4:
            hint = " Convert 0-1 floats with (x * 255).round().astype(np.uint8)."
        raise ValueError(
            f"Expected `{key}` in {file} as {expected}, but found dtype {array.dtype} and shape "
            f"{array.shape}.{hint}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"Expected `{key}` in {file} to hold at least one image, but it is empty.")
    # (N, 3, H, 3) is ambiguous; NHWC wins as it is numpy's / PIL's native layout.
    if array.shape[-1] == 3:
        array = array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(array)


def _npz_num_classes(array: np.ndarray, file: Path) -> int:
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer) or int(array.reshape(-1)[0]) < 1:
        raise ValueError(
            f"Expected `num_classes` in {file} as one integer >= 1 (np.int64(K)), but found dtype "
            f"{array.dtype} and shape {array.shape}{f' holding {array.reshape(-1)[0]}' if array.size == 1 else ''}."
        )
    return int(array.reshape(-1)[0])


def _label_ranges(labels: np.ndarray, limit: int = 8) -> str:
    """Sorted distinct ``labels`` as ranges: ``0-9, 1000000`` (the first ``limit`` ranges)."""
    breaks = np.flatnonzero(np.diff(labels) != 1)
    starts = np.concatenate(([0], breaks + 1))
    stops = np.concatenate((breaks, [len(labels) - 1]))
    parts = [str(labels[a]) if a == b else f"{labels[a]}-{labels[b]}" for a, b in zip(starts, stops)]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f" and {more} more range(s)" if more > 0 else "")


def _check_labels_dense(y_train: np.ndarray, y_test: np.ndarray, n_labels: int, file: Path) -> None:
    """Without ``classes`` or ``num_classes`` the number of classes is read from the labels (largest + 1),
    so every label 0..K-1 must occur: a gap (one stray label 10**6 among 0..9) would otherwise build a
    model with 1,000,001 outputs in silence."""
    present = np.union1d(y_train, y_test)
    if len(present) == n_labels:
        return
    counts = {int(v): int((y_train == v).sum() + (y_test == v).sum()) for v in present[-3:]}
    largest = ", ".join(f"{v} ({c} image{'s' if c != 1 else ''})" for v, c in reversed(counts.items()))
    raise ValueError(
        f"Expected the labels in {file} to be 0..K-1 with every class present (the file has no "
        f"`classes` or `num_classes` to say otherwise), but they take {len(present)} distinct values: "
        f"{_label_ranges(present)}. The largest label {n_labels - 1} would make a model of {n_labels} "
        f"classes, {n_labels - len(present)} of them without a single image (largest labels: "
        f"{largest}). Relabel onto 0..K-1 (np.unique(labels, return_inverse=True)), drop the stray "
        "images, or, if classes without images are intended, store their number in the file: "
        "`classes` (K names) or `num_classes` (np.int64(K))."
    )


def _npz_labels(array: np.ndarray, key: str, n: int, file: Path) -> np.ndarray:
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"Expected `{key}` in {file} as integer labels of shape ({n},) (one per image), but "
            f"found dtype {array.dtype} and shape {array.shape}."
        )
    if array.min() < 0:
        raise ValueError(
            f"Expected `{key}` in {file} to hold labels >= 0, but found {array.min()}."
        )
    if array.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"Expected `{key}` in {file} to hold class indices, but found the label {array.max()}."
        )
    return array.astype(np.int64)


_ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of every file np.savez writes (a zip archive)
_NPZ_FIX = (
    "Re-create the dataset file (np.savez(path, x_train=..., y_train=..., x_test=..., "
    "y_test=...)) or copy it again."
)
# What zipfile raises for a cut or garbled archive: no zip directory at the end (cut short), a bad
# checksum (changed bytes), a broken deflate stream (np.savez_compressed).
_ZIP_DAMAGE = (zipfile.BadZipFile, EOFError, zlib.error)


def _open_npz(handle: BinaryIO, file: Path) -> Any:
    """``np.load`` of the .npz open as ``handle``, with our own errors for other or damaged files:
    numpy's for a file that is no zip archive advises allow_pickle=True, which would run code from
    the file. (Given a path, numpy leaves the file open when the archive is damaged.)"""
    head = handle.read(len(_NPY_MAGIC))
    handle.seek(0)
    if not head.startswith(_ZIP_MAGIC):
        found = "a single .npy array (np.save)" if head == _NPY_MAGIC else "not a zip archive"
        raise ValueError(
            f"Expected {file} to be an .npz file (a zip archive of arrays, as np.savez writes), "
            f"but it is {found}. {_NPZ_FIX}"
        )
    try:
        return np.load(handle, allow_pickle=False)
    except _ZIP_DAMAGE as exc:
        raise _damaged_npz(file, exc) from exc


def _npz_member(npz: Any, key: str, file: Path) -> np.ndarray:
    try:
        return npz[key]
    except _ZIP_DAMAGE as exc:
        raise _damaged_npz(file, exc) from exc


def _damaged_npz(file: Path, exc: Exception) -> ValueError:
    return ValueError(
        f"{file} is a damaged .npz file ({type(exc).__name__}: {exc}); it was probably cut short "
        f"or changed while being written or copied. {_NPZ_FIX}"
    )


def load_npz(path: str | os.PathLike) -> ImageDataset:
    """A dataset stored in one ``.npz`` file.

    Arrays: ``x_train``, ``x_test`` uint8 images (N, H, W, 3) or (N, 3, H, W); ``y_train``,
    ``y_test`` integer labels (N,); optional ``classes`` (a string array in label order; without
    it classes are named ``"0"``, ``"1"``, ...) and ``num_classes`` (one integer). Without either, the
    labels must be 0..K-1 with every one present (a stray large label is refused, not turned into a
    model with that many outputs); with one, labels must lie below it. A relative ``path`` resolves against the current
    directory. Normalisation follows the image size: 64x64 images get ImageNet's mean/std (the
    TinyImageNet protocol), any other size CIFAR's 0.5.
    """
    file = _absolute(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"No .npz file at {file} (from {os.fspath(path)!r}; relative paths resolve against "
            f"the current directory {os.getcwd()}). Pass 'npz:<path to an existing .npz>'."
        )
    with open(file, "rb") as handle, _open_npz(handle, file) as npz:
        absent = [k for k in _NPZ_KEYS if k not in npz.files]
        if absent:
            raise ValueError(
                f"Expected arrays {', '.join(_NPZ_KEYS)} in {file}, but {', '.join(absent)} "
                f"missing (found: {', '.join(npz.files) or 'none'})."
            )
        x_train = _npz_images(_npz_member(npz, "x_train", file), "x_train", file)
        x_test = _npz_images(_npz_member(npz, "x_test", file), "x_test", file)
        y_train = _npz_labels(_npz_member(npz, "y_train", file), "y_train", len(x_train), file)
        y_test = _npz_labels(_npz_member(npz, "y_test", file), "y_test", len(x_test), file)
        classes = None
        if "classes" in npz.files:
            try:
                names = _npz_member(npz, "classes", file)
            except ValueError as exc:  # an object array needs pickle, which stays off
                raise ValueError(
                    f"Expected `classes` in {file} as a string array (np.asarray(names, "
                    f"dtype=str)), but it needs pickle to load ({exc})."
                ) from exc
            if names.ndim != 1:
                raise ValueError(
                    f"Expected `classes` in {file} of shape (C,), but found shape {names.shape}."
                )
            classes = tuple(str(n) for n in names)
        num_classes = (_npz_num_classes(_npz_member(npz, "num_classes", file), file)
                       if "num_classes" in npz.files else None)
        names_present = {"classes"} & set(npz.files)
    if x_train.shape[2:] != x_test.shape[2:]:
        raise ValueError(
            f"Expected `x_train` and `x_test` in {file} to share one image size, but found "
            f"{x_train.shape[2:]} and {x_test.shape[2:]} (H, W)."
        )
    n_labels = int(max(y_train.max(), y_test.max())) + 1
    if num_classes is not None and classes is not None and num_classes != len(classes):
        raise ValueError(
            f"Expected `num_classes` in {file} to equal the number of `classes` names, but found "
            f"num_classes = {num_classes} and {len(classes)} names."
        )
    if classes is None and num_classes is not None:
        classes = tuple(str(i) for i in range(num_classes))
    if classes is None:
        _check_labels_dense(y_train, y_test, n_labels, file)
        classes = tuple(str(i) for i in range(n_labels))
    elif len(classes) < n_labels:
        given = (f"{len(classes)} names in `classes`" if "classes" in names_present
                 else f"num_classes = {num_classes}")
        raise ValueError(
            f"Expected every label in {file} below the number of classes, but the largest label is "
            f"{n_labels - 1} and the file gives {given} (at least {n_labels} needed). Fix the stray "
            "labels, or store the true number of classes."
        )
    imagenet_sized = x_train.shape[2:] == (_TINY_SIZE, _TINY_SIZE)
    return ImageDataset(
        name=f"npz:{os.fspath(path)}",
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        classes=classes,
        mean=IMAGENET_MEAN if imagenet_sized else CIFAR_MEAN,
        std=IMAGENET_STD if imagenet_sized else CIFAR_STD,
    )


# --------------------------------------------------------------------------------------------
# digits (embedded, offline)
# --------------------------------------------------------------------------------------------


def _stratified_split(
    labels: np.ndarray, test_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (each ascending) with per-class test counts proportional to size.

    Class c gets floor(test_size * n_c / n) test images, the leftover ones going to the classes
    with the largest remainders (ties: lower class first); its test images are its first members
    in ``RandomState(seed).permutation(n)``, whose stream NumPy keeps fixed across versions.
    """
    order = np.random.RandomState(seed).permutation(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * test_size / len(labels)
    quota = np.floor(exact).astype(np.int64)
    leftover = test_size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:leftover]] += 1
    test = np.concatenate(
        [order[labels[order] == c][:q] for c, q in zip(classes, quota, strict=True)]
    )
    test = np.sort(test)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load_digits() -> ImageDataset:
    """scikit-learn's handwritten digits (UCI optdigits test set), as a 32x32 RGB dataset.

    The 1,797 images of 8x8 pixels with values 0-16 are scaled to 0-255 (x 255 / 16), upsampled
    to 32x32 with bilinear interpolation (``F.interpolate``, ``align_corners=False``, no
    antialias), rounded to uint8 and copied to 3 identical channels. Fixed stratified split:
    1,297 train / 500 test (:data:`DIGITS_TEST_SIZE`), test images drawn per class with
    ``numpy.random.RandomState(0)`` (:data:`DIGITS_SEED`), so it is the same on every machine
    (all arithmetic here is exact in float32). Classes ``"0"`` .. ``"9"``; CIFAR normalisation.
    Needs no files: the offline default.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    # 255 / 16 and the bilinear weights (multiples of 1/8) are dyadic, so every value below is
    # exact in float32 and the rounding is the same on every machine and device.
    small = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) * np.float32(255 / 16))
    large = F.interpolate(
        small.unsqueeze(1), size=(_DIGITS_SIZE, _DIGITS_SIZE), mode="bilinear", align_corners=False
    )
    images = large.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)  # (N, 3, 32, 32)
    train, test = _stratified_split(labels, DIGITS_TEST_SIZE, DIGITS_SEED)
    train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
    y = torch.from_numpy(labels)
    return ImageDataset(
        name="digits",
        x_train=images[train_t].contiguous(),
        y_train=y[train_t].contiguous(),
        x_test=images[test_t].contiguous(),
        y_test=y[test_t].contiguous(),
        classes=tuple(str(d) for d in range(10)),
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
    )


# --------------------------------------------------------------------------------------------
# Registered names
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
