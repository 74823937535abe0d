"""A dataset of one ``.npz`` file (the name ``npz:<path>``): the user's own data, or a converted copy.

Layout: the arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8 images NHWC or NCHW, integer
labels) and optionally ``classes`` and ``num_classes``, as ``np.savez`` writes them (see :func:`load_npz`).
The file is read without pickle, and a file that is no zip archive or a damaged one is named as such.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..base import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, ImageDataset
from ._common import _NPY_MAGIC, _absolute
from .tinyimagenet import _TINY_SIZE

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
