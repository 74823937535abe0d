"""CIFAR-10-C and CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019): one ``.npy`` per corruption, 5 severities stacked.

Layout: a folder with ``<corruption>.npy`` (uint8 (5 N, H, W, 3), severity s in rows (s - 1) N .. s N - 1)
and ``labels.npy``, for the corruptions of :data:`CIFAR_C_CORRUPTIONS`. The folder is
``<root>/CIFAR-10-C`` / ``<root>/CIFAR-100-C`` as the Zenodo archives extract (records 2535967 and
3555552), or any folder given as ``cifar10-c:<folder>``: the sets :func:`sharpkit.data.corruptions.write_corrupted_npy`
generates have the same layout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...utils.validation import check_choice
from ..base import CIFAR_MEAN, CIFAR_STD, CorruptedImageDataset
from ._common import _NPY_MAGIC, _absolute, _check_labels, _download_archive, _fetch, _provide_help, data_root
from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES

# The 19 corruptions of CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019): the 15
# benchmark corruptions followed by the 4 extra ones the protocol also averages over.
CIFAR_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip


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
