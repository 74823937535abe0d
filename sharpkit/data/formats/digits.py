"""scikit-learn's handwritten digits (``sklearn.datasets.load_digits``, the UCI optdigits test set) as a
32x32 RGB dataset: no files on disk (they ship with scikit-learn), so it is the offline default.

The split and the upsampling are part of the dataset's definition (:data:`DIGITS_TEST_SIZE`,
:data:`DIGITS_SEED`, :func:`load_digits`): change either and results change.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..base import CIFAR_MEAN, CIFAR_STD, ImageDataset

# The digits split is part of the dataset's definition: change either and results change.
DIGITS_TEST_SIZE = 500
DIGITS_SEED = 0

_DIGITS_SIZE = 32


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
