"""What the on-disk formats share: where the data root is, the messages that say where a loader looked and
how to provide the data, downloads that fail with one offline hint, and the label range check.

The data root (:func:`data_root`): the ``root`` argument, else ``$SHARPKIT_DATA``, else
``~/.cache/sharpkit/data``. :mod:`sharpkit.data.datasets` re-exports it (its public home).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DATA_ROOT_ENV = "SHARPKIT_DATA"
DEFAULT_DATA_ROOT = "~/.cache/sharpkit/data"

_NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every file np.save writes


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
