"""CIFAR-10-C style common corruptions, generated locally (no CIFAR-10-C download is needed).

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019) define 15 corruptions plus 4 extra ones (speckle noise, Gaussian blur,
spatter, saturate), each at severities 1..5. CIFAR-10-C was made by
``hendrycks/robustness/ImageNet-C/create_c/make_cifar_c.py``; this module re-implements those
operations with numpy / scipy / PIL / torch and uses that script's **CIFAR** severity constants
(not the ImageNet ones of the PyPI package ``imagecorruptions``).

Public API:

* :func:`corrupt` - corrupt a uint8 batch ``(N, 3, H, W)`` with one corruption at one severity.
* :func:`write_corrupted_npy` - write a corrupted test set in the CIFAR-10-C ``.npy`` layout.
* :data:`CIFAR_C_CORRUPTIONS` - the 19 corruptions of the protocol; :data:`CORRUPTIONS` - the 18
  implemented ones (``frost`` is left out: it blends in photographs of frost that cannot be
  shipped).

Conventions shared by every corruption:

* Pixel values are taken to ``[0, 1]`` (``x / 255``), corrupted, clipped to ``[0, 1]``, scaled by
  255 and **truncated** to uint8 (``np.uint8`` of a float truncates; the reference script does
  this, so the published CIFAR-10-C is truncated as well). JPEG and pixelate are done by PIL on
  8-bit images, as in the reference.
* All randomness comes from one ``numpy.random.Generator`` seeded by a draw from the given
  ``torch.Generator``; no global random state is touched (``generator=None`` draws that seed from
  torch's default generator, as torch functions do).

Three levels, one module each: :mod:`sharpkit.data.image_ops` (the numpy image primitives: blurs,
zoom, plasma fractal, HSV, Canny, chamfer distance, ...), :mod:`sharpkit.data.corruption_functions`
(the 18 corruptions and their severity constants, and how each replaces the reference's OpenCV,
scikit-image and ImageMagick calls) and this module (the names, the checks, :func:`corrupt` and the
generation of a whole corrupted test set).

Image size. The CIFAR constants are used for 32 px and 64 px (TinyImageNet-sized) images alike.
Constants that are *fractions of the image* or tied to its grid are scaled with the side ``H``:
the plasma map is ``H x H`` (reference: 32), the glass-blur shuffle covers rows/columns
``2 .. H-1``, elastic ``IMSIZE = H``, pixelate resizes to ``int(H * c)``, and every noise layer is
``H x H``. Constants in *pixels* (blur sigmas and radii, glass-blur displacement, motion-blur
radius) are kept, so a 64 px image gets the same per-pixel corruption, which is relatively
milder than Tiny-ImageNet-C's (whose own constants are different and not used here).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import torch

from sharpkit.utils.io import atomic_path, remove_stale_temp_files, write_text
from sharpkit.utils.validation import check_positive

# The two lower levels: the corruption functions (by name) over the numpy image operations of image_ops.
from .corruption_functions import _REGISTRY

CIFAR_C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
)
"""The 19 corruptions of the CIFAR-10-C protocol (15 standard + 4 extra), in the reference order."""

_OMITTED = {
    "frost": "it blends in photographs of frost (frost1.png ... frost6.jpg of hendrycks/robustness) "
    "that cannot be shipped or downloaded here",
}

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
SUPPORTED_SIZES: tuple[int, ...] = (32, 64)
_CHUNK = 1000  # images corrupted per call in write_corrupted_npy (bounds float64 memory use)

CORRUPTIONS: tuple[str, ...] = tuple(name for name in CIFAR_C_CORRUPTIONS if name in _REGISTRY)
"""The implemented corruptions: :data:`CIFAR_C_CORRUPTIONS` without ``frost``."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_name(name: object) -> str:
    if isinstance(name, str) and name in _OMITTED:
        raise ValueError(
            f"Corruption {name!r} is not available: {_OMITTED[name]}. "
            f"Available corruptions: {', '.join(CORRUPTIONS)}."
        )
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"Expected argument `name` to be one of {', '.join(CORRUPTIONS)}, but got {name!r}."
        )
    return name


def _check_severity(severity: object) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f"Expected argument `severity` to be an integer from 1 to 5, but got {severity!r}.")
    return int(severity)


def _check_batch(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"Expected `images` to be a torch.Tensor, but got {type(images).__name__}.")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            "Expected `images` as a uint8 tensor of shape (N, 3, H, W), but got dtype "
            f"{images.dtype} and shape {tuple(images.shape)}. Convert with `(x * 255).round().to(torch.uint8)` "
            "for float images in [0, 1]."
        )
    h, w = images.shape[2:]
    if h != w or h not in SUPPORTED_SIZES:
        raise ValueError(
            f"Expected square images of side {' or '.join(map(str, SUPPORTED_SIZES))} (CIFAR, TinyImageNet), "
            f"but got {h}x{w}."
        )
    return images


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy Generator seeded by one 63-bit draw from ``generator`` (or torch's default one)."""
    device = generator.device if generator is not None else "cpu"
    seed = torch.randint(0, 2**63 - 1, (1,), generator=generator, device=device, dtype=torch.int64)
    return np.random.default_rng(int(seed.item()))


def corrupt(
    images: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply one CIFAR-10-C corruption at one severity to a batch of images.

    Args:
        images: uint8 tensor (N, 3, H, W), H = W = 32 or 64, any device.
        name: one of :data:`CORRUPTIONS` (``"frost"`` raises: its image assets are unavailable).
        severity: 1 (mildest) .. 5, with the CIFAR-10-C constants of ``make_cifar_c.py``.
        generator: source of all randomness (a numpy Generator is seeded from one draw of it); the
            same generator state gives the same output. ``None`` uses torch's default generator.

    Returns:
        uint8 tensor of the same shape on the same device.

    Raises:
        ValueError: unknown or omitted ``name``, severity outside 1..5, or wrong image layout.
        TypeError: ``images`` is not a tensor.
    """
    name = _check_name(name)
    severity = _check_severity(severity)
    images = _check_batch(images)
    rng = _numpy_rng(generator)
    if images.shape[0] == 0:
        return images.clone()
    nhwc = images.detach().permute(0, 2, 3, 1).cpu().numpy()
    out = _REGISTRY[name](nhwc, severity, rng)
    out = np.clip(out, 0, 255).astype(np.uint8)  # truncation, as np.uint8 in the reference
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(images.device)


def _derived_generator(seed: int, name: str, severity: int) -> torch.Generator:
    """A generator that depends only on ``(seed, name, severity)`` (stable across processes)."""
    digest = hashlib.sha256(f"sharpkit.corruptions/{seed}/{name}/{severity}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _sharpkit_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("sharpkit")
    except PackageNotFoundError:
        return None


def _atomic_json(path: str, payload: dict) -> None:
    # json.dump's exact bytes (indent 2, unsorted), through the package's one atomic writer.
    write_text(path, json.dumps(payload, indent=2))


def _atomic_npy(path: str, shape: tuple[int, ...], dtype: npt.DTypeLike, fill: Callable[[np.ndarray], None]) -> None:
    """Create ``path`` as a .npy of ``shape``: ``fill`` writes a memory map of a temporary file in
    the same folder, which then replaces ``path`` (readers never see a half-written file)."""
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(array)
        array.flush()
        del array


def write_corrupted_npy(
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    out_dir: str | os.PathLike,
    corruptions: Iterable[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Write corrupted copies of a test set in the CIFAR-10-C layout.

    For each corruption, ``<out_dir>/<name>.npy`` holds uint8 (5 N, H, W, 3) (channels last), severity
    ``s`` in rows ``(s-1) N .. s N - 1``; ``labels.npy`` holds the int64 labels tiled 5 times
    (5 N,); ``corruptions.json`` records the names, seed, image size, N, sharpkit version and that
    frost is omitted. Files are written atomically (temporary file + ``os.replace``).

    Each (corruption, severity) uses its own generator derived from ``(seed, name, severity)``,
    so writing a subset gives the same arrays as writing all. Images are corrupted in chunks of
    1000 with that generator, so the arrays also depend on nothing else.

    Args:
        images: uint8 tensor (N, 3, H, W), H = W = 32 or 64.
        labels: N integer labels.
        out_dir: folder, created if missing.
        corruptions: names from :data:`CORRUPTIONS`; ``None`` = all of them.
        seed: non-negative integer.
        progress: show a tqdm bar.

    Returns:
        The corruption names written, in the order given.
    """
    from tqdm import tqdm

    images = _check_batch(images)
    check_positive("seed", seed, allow_zero=True, integer=True)
    if isinstance(corruptions, str):
        raise ValueError(
            f"Expected argument `corruptions` to be a list of names, but got the string {corruptions!r}; "
            f"pass [{corruptions!r}] for one corruption."
        )
    names = list(CORRUPTIONS) if corruptions is None else list(dict.fromkeys(corruptions))
    for name in names:
        _check_name(name)
    labels_np = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    n = images.shape[0]
    if labels_np.shape != (n,) or not np.issubdtype(labels_np.dtype, np.integer):
        raise ValueError(
            f"Expected `labels` as {n} integers (one per image), but got dtype {labels_np.dtype} "
            f"and shape {labels_np.shape}."
        )
    if n == 0:
        raise ValueError("Expected at least one image in `images`, but got N = 0.")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temp_files(out_dir)  # of a writer killed here before
    side = images.shape[2]
    images = images.cpu()
    chunks = range(0, n, _CHUNK)
    with tqdm(total=len(names) * len(SEVERITIES) * len(chunks), disable=not progress, desc="corruptions") as bar:
        for name in names:

            def fill(array: np.ndarray, name: str = name) -> None:
                for severity in SEVERITIES:
                    generator = _derived_generator(seed, name, severity)
                    for start in chunks:
                        stop = min(start + _CHUNK, n)
                        out = corrupt(images[start:stop], name, severity, generator)
                        array[(severity - 1) * n + start : (severity - 1) * n + stop] = out.permute(0, 2, 3, 1).numpy()
                        bar.set_postfix_str(f"{name} s{severity}")
                        bar.update(1)

            _atomic_npy(os.path.join(out_dir, f"{name}.npy"), (len(SEVERITIES) * n, side, side, 3), np.uint8, fill)
    _atomic_npy(
        os.path.join(out_dir, "labels.npy"),
        (len(SEVERITIES) * n,),
        np.int64,
        lambda array: array.__setitem__(slice(None), np.tile(labels_np.astype(np.int64), len(SEVERITIES))),
    )
    _atomic_json(
        os.path.join(out_dir, "corruptions.json"),
        {
            "corruptions": names,
            "seed": seed,
            "sharpkit_version": _sharpkit_version(),
            "image_size": side,
            "num_images": n,
            "severities": list(SEVERITIES),
            "layout": "<name>.npy: uint8 (5*N, H, W, 3), severity s in rows (s-1)*N .. s*N-1; "
            "labels.npy: int64 (5*N,) = labels tiled 5 times",
            "note": f"frost omitted: {_OMITTED['frost']}.",
        },
    )
    return names
