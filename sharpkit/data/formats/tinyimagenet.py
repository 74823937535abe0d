"""TinyImageNet (Stanford CS231n), read from the JPEG folders of ``tiny-imagenet-200/``, decoded once into a cache.

Layout under the data root, as the official zip http://cs231n.stanford.edu/tiny-imagenet-200.zip extracts:
``tiny-imagenet-200/wnids.txt`` (the 200 class ids), ``words.txt`` (their names),
``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` labelled by
``val/val_annotations.txt``; the labelled val split is the test split. The decoded arrays are cached in
``tiny-imagenet-200/sharpkit-cache.npz`` (see :func:`load_tinyimagenet` for when it is reused).
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...utils.io import TEMP_SUFFIX, atomic_path, remove_stale_temp_files
from ..base import IMAGENET_MEAN, IMAGENET_STD, ImageDataset
from ._common import _download_archive, _fetch, _provide_help, data_root

_TINY_SIZE = 64
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
