"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read from the pickles of the official python archives.

Layout under the data root, as the archives of https://www.cs.toronto.edu/~kriz/cifar.html extract (and
``torchvision.datasets.CIFAR10`` / ``CIFAR100`` download them):

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch``, ``batches.meta``;
- ``cifar-100-python/``: ``train``, ``test``, ``meta`` (the fine labels are read).

Each batch is a pickled dict with ``data`` (uint8 rows of 3,072 values: the red, green and blue 32x32
planes) and its labels. The pickles are read by an unpickler that builds only what a CIFAR batch holds
(:class:`_CifarUnpickler`), so a doctored file cannot run code; the arrays are read directly, without
torchvision's per-sample ``Dataset``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base import CIFAR_MEAN, CIFAR_STD, ImageDataset
from ._common import _check_labels, _fetch, _provide_help, data_root

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
