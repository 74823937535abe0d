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

How the reference's library calls (OpenCV, scikit-image, ImageMagick Wand) are replaced:

* Motion blur (ImageMagick ``MotionBlurImage``): re-implemented as its one-sided Gaussian line
  kernel - taps ``i = 0 .. 2*ceil(radius)`` with weights ``exp(-i^2 / (2 sigma^2))`` (normalised)
  at offsets ``(round(i cos a), round(i sin a))``, edge pixels repeated outside the image.
* Fog's plasma fractal is the same diamond-square recursion (torus, initial wibble 100, noise
  amplitude ``wibble^2``, ``wibble /= decay`` per octave) written here, batched.
* Spatter needs OpenCV's Canny, distance transform and histogram equalisation; they are written
  here (Sobel 3x3 with L1 magnitude, 4-direction non-maximum suppression and hysteresis; the
  5x5 chamfer distance; OpenCV's equalisation table), including OpenCV's float32 rounding and the
  reference's uint8 wrap-around where they change the result.
* Glass blur: the reference "swaps" pixels with a tuple assignment of NumPy *views*, which in fact
  copies pixel ``(h+dy, w+dx)`` onto ``(h, w)`` and leaves the source unchanged. The published
  data has that behaviour, so it is reproduced (as one vectorised gather, see
  :func:`_glass_shuffle`).
* Impulse noise flips each value independently with probability ``amount`` (half to 0, half to 1),
  as current scikit-image ``random_noise(mode="s&p")`` does (older versions drew a fixed number of
  coordinates instead).

Checked once against the reference operations themselves (OpenCV 5.0, scikit-image 0.26,
ImageMagick 6.9.11; not dependencies of sharpkit) fed with the same random draws: defocus,
Gaussian, glass and zoom blur, fog, brightness/saturate (HSV), elastic, snow, spatter and motion
blur agree to within one grey level (>= 98 % of values identical, all but motion blur > 99.9 %). The
random draws themselves are batched differently, so the arrays are not those of the published
CIFAR-10-C, only equally distributed.

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
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from scipy import ndimage

from sharpkit.utils.io import atomic_path, remove_stale_temp_files, write_text
from sharpkit.utils.validation import check_positive

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

# Severity constants of make_cifar_c.py, index = severity - 1.
_GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)  # std on the [0, 1] scale
_SHOT_NOISE = (500, 250, 100, 75, 50)  # photons at full intensity
_IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)  # fraction of values flipped
_SPECKLE_NOISE = (0.06, 0.10, 0.12, 0.16, 0.20)  # std of the multiplicative noise
_GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)  # sigma, px
_GLASS_BLUR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, delta, iters
_DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, alias sigma
_MOTION_BLUR = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # radius px, sigma px
_ZOOM_BLUR_END = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors np.arange(1, end, 0.01)
_SNOW = (  # loc, scale, zoom, threshold, blur radius, blur sigma, blend
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
_FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # strength, wibble decay
_BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the deviation from the channel mean
_SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # HSV s -> s * a + b
_JPEG_QUALITY = (80, 65, 58, 50, 40)
_PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # side of the down-sampled image / side
_ELASTIC = (  # alpha, sigma, affine jitter; fractions of the image side
    (0.0, 0.0, 0.08),
    (0.05, 0.2, 0.07),
    (0.08, 0.06, 0.06),
    (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03),
)
_SPATTER = (  # loc, scale, sigma, threshold, intensity (water) / sigma (mud), mud?
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
_BOX = getattr(Image, "Resampling", Image).BOX  # Pillow >= 9.1 moved the constant
_WATER_RGB = np.array([175, 238, 238]) / 255.0  # pale turquoise
_MUD_RGB = np.array([63, 42, 20]) / 255.0  # brown

# --------------------------------------------------------------------------------------------
# Helpers (all batched: images are float arrays (N, H, W, C), values on the [0, 1] scale)
# --------------------------------------------------------------------------------------------


def _blur(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur of the two spatial axes (axes 1, 2) only; skimage.filters.gaussian defaults."""
    sigmas = [0.0, sigma, sigma] + [0.0] * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean filter of axes 1, 2 with OpenCV's default border (reflect-101 = scipy 'mirror')."""
    return ndimage.uniform_filter(x.astype(np.float64), size=(1, 3, 3), mode="mirror")


def _border_index(i: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map integer indices outside ``[0, size)`` back inside, like scipy.ndimage boundary modes."""
    if mode == "nearest":
        return np.clip(i, 0, size - 1)
    if mode == "mirror":  # d c b | a b c d | c b a (OpenCV BORDER_REFLECT_101)
        period = 2 * size - 2
        i = np.abs(i) % period
        return np.where(i >= size, period - i, i)
    if mode == "reflect":  # c b a | a b c d | d c b (half-sample symmetric)
        i = np.mod(i, 2 * size)
        return np.where(i >= size, 2 * size - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def _bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Sample ``x`` (N, H, W, C) at real coordinates ``rows, cols`` (N, h, w): bilinear, pixel
    centres at integers, neighbours outside the image taken by ``mode`` (see ``_border_index``).
    Same as ``scipy.ndimage.map_coordinates(order=1)`` per image and channel."""
    n, h, w = x.shape[:3]
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    ra, rb = _border_index(r0, h, mode), _border_index(r0 + 1, h, mode)
    ca, cb = _border_index(c0, w, mode), _border_index(c0 + 1, w, mode)
    b = np.arange(n).reshape((n,) + (1,) * (rows.ndim - 1))
    top = x[b, ra, ca] * (1 - fc) + x[b, ra, cb] * fc
    bottom = x[b, rb, ca] * (1 - fc) + x[b, rb, cb] * fc
    return top * (1 - fr) + bottom * fr


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of ``x`` (N, H, W, C) by ``factor`` >= 1 and crop back to (H, W).

    The centre ``ceil(H / factor)`` square is resized to ``round(that * factor)`` with bilinear
    interpolation whose corner pixels map onto corner pixels - ``scipy.ndimage.zoom(order=1)``,
    done here with torch for speed - and the central ``H x H`` part of the result is kept.
    """
    side = x.shape[1]
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    out_side = int(round(crop * factor))  # the output shape rule of scipy.ndimage.zoom
    patch = torch.from_numpy(np.ascontiguousarray(x[:, top : top + crop, top : top + crop]))
    zoomed = torch.nn.functional.interpolate(
        patch.permute(0, 3, 1, 2), size=(out_side, out_side), mode="bilinear", align_corners=True
    )
    trim = (out_side - side) // 2
    return zoomed.permute(0, 2, 3, 1)[:, trim : trim + side, trim : trim + side].numpy()


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles_deg: np.ndarray) -> np.ndarray:
    """ImageMagick-style motion blur of ``x`` (N, H, W, C), one angle (degrees) per image.

    ``out(y, x) = sum_i k_i * img(y + round(i sin a), x + round(i cos a))`` for
    ``i = 0 .. 2*ceil(radius)`` with ``k_i`` proportional to ``exp(-i^2 / (2 sigma^2))`` (a trail
    on one side only); pixels outside the image repeat the edge (ImageMagick's default).
    """
    n, h, w = x.shape[:3]
    taps = np.arange(2 * int(np.ceil(radius)) + 1)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(angles_deg)
    # ImageMagick rounds with ceil(v - 0.5); offsets per (image, tap)
    dcol = np.ceil(taps[None, :] * np.cos(angle)[:, None] - 0.5).astype(np.int64)
    drow = np.ceil(taps[None, :] * np.sin(angle)[:, None] - 0.5).astype(np.int64)
    b = np.arange(n)[:, None, None]
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    out = np.zeros_like(x, dtype=np.float64)
    for i, weight in enumerate(weights):
        r = np.clip(rows + drow[:, i, None, None], 0, h - 1)
        c = np.clip(cols + dcol[:, i, None, None], 0, w - 1)
        out += weight * x[b, r, c]
    return out


def _plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` diamond-square height maps (n, size, size) on a torus, each rescaled to [0, 1].

    Every new point is the mean of its 4 known neighbours (wrapping around) plus uniform noise in
    ``[-wibble^2, wibble^2]``; ``wibble`` starts at 100 and is divided by ``decay`` per octave
    (the amplitude rule of the fog of ImageNet-C / CIFAR-10-C). ``size`` is a power of two.
    """
    heights = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def noise(shape: tuple[int, ...]) -> np.ndarray:
        return wibble * rng.uniform(-wibble, wibble, shape)

    while step >= 2:
        half = step // 2
        corners = heights[:, ::step, ::step]
        # square step: cell centres from the 4 corners of their cell
        around = corners + np.roll(corners, -1, axis=1)
        around = around + np.roll(around, -1, axis=2)
        heights[:, half::step, half::step] = around / 4 + noise(around.shape)
        centres = heights[:, half::step, half::step]
        # diamond step, edge mid-points on corner rows: corners left/right, centres above/below
        around = corners + np.roll(corners, -1, axis=2) + centres + np.roll(centres, 1, axis=1)
        heights[:, ::step, half::step] = around / 4 + noise(around.shape)
        # ... and on centre rows: centres left/right, corners above/below
        around = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        heights[:, half::step, ::step] = around / 4 + noise(around.shape)
        step, wibble = half, wibble / decay
    heights -= heights.min(axis=(1, 2), keepdims=True)
    return heights / heights.max(axis=(1, 2), keepdims=True)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB -> HSV, all channels on [0, 1] (hue as a fraction of a turn; the colorsys convention)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    safe = np.where(delta > 0, delta, 1.0)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1.0), 0.0)
    h = np.where(r == v, (g - b) / safe, np.where(g == v, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_rgb_to_hsv` (the six-sector formula)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.astype(np.int64) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(sector, [c[k] for c in choices]) for k in range(3)], axis=-1)


def _glass_shuffle(x: np.ndarray, drow: np.ndarray, dcol: np.ndarray, lo: int) -> np.ndarray:
    """One pass of glass blur's local pixel shuffle with displacements in {-1, 0}.

    The reference visits ``h, w = H-1 .. lo`` (descending) and assigns ``x[h, w] = x[h+dh, w+dw]``
    (its tuple "swap" of NumPy views copies; the source keeps its value). With displacements <= 0
    a source is always visited later than its target, so it still holds its original value and
    the pass equals one gather: ``out[h, w] = x[h + drow, w + dcol]`` for ``lo <= h, w < H``.
    ``drow``, ``dcol``: (N, H - lo, W - lo) integer arrays.
    """
    out = x.copy()
    n, h, w = x.shape[:3]
    b = np.arange(n)[:, None, None]
    rows = np.arange(lo, h)[None, :, None] + drow
    cols = np.arange(lo, w)[None, None, :] + dcol
    out[:, lo:, lo:] = x[b, rows, cols]
    return out


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (OpenCV's RGB2GRAY weights), keeping a channel axis of size 1."""
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]


def _canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges (bool) of uint8 images (N, H, W), OpenCV's variant without pre-smoothing.

    Sobel 3x3 derivatives (edge pixels repeated), L1 magnitude ``|gx| + |gy|``; a pixel above
    ``low`` survives if it is a maximum across the edge (gradient direction quantised to 0, 45,
    90, 135 degrees; out-of-image neighbours count as 0); survivors above ``high`` are edges, the
    others only when 8-connected to such an edge (hysteresis).
    """
    f = img.astype(np.float64)

    def sobel(derivative_axis: int, smoothing_axis: int) -> np.ndarray:
        d = ndimage.correlate1d(f, [-1, 0, 1], axis=derivative_axis, mode="nearest")
        return ndimage.correlate1d(d, [1, 2, 1], axis=smoothing_axis, mode="nearest")

    gx, gy = sobel(2, 1), sobel(1, 2)
    mag = np.abs(gx) + np.abs(gy)
    pad = np.pad(mag, ((0, 0), (1, 1), (1, 1)))

    def neighbour(dr: int, dc: int) -> np.ndarray:
        return pad[:, 1 + dr : pad.shape[1] - 1 + dr, 1 + dc : pad.shape[2] - 1 + dc]

    ax, ay = np.abs(gx), np.abs(gy)
    tan22 = np.tan(np.pi / 8)
    horizontal = ay < ax * tan22
    vertical = ay > ax * (tan22 + 2.0)  # tan(67.5 deg) = tan(22.5 deg) + 2
    same_sign = gx * gy >= 0
    keep = np.where(
        horizontal,
        (mag > neighbour(0, -1)) & (mag >= neighbour(0, 1)),
        np.where(
            vertical,
            (mag > neighbour(-1, 0)) & (mag >= neighbour(1, 0)),
            np.where(
                same_sign,
                (mag > neighbour(-1, -1)) & (mag > neighbour(1, 1)),
                (mag > neighbour(-1, 1)) & (mag > neighbour(1, -1)),
            ),
        ),
    )
    candidate = keep & (mag > low)
    strong = candidate & (mag > high)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside each image, never across images
    labels, count = ndimage.label(candidate, structure=structure)
    has_strong = np.zeros(count + 1, dtype=bool)
    has_strong[labels[strong]] = True
    has_strong[0] = False
    return has_strong[labels]


def _equalize_hist(img: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` of each uint8 image in (N, H, W).

    With ``i0`` the darkest level present, level ``i`` maps to
    ``round(255 * (cdf(i) - hist(i0)) / (pixels - hist(i0)))``; a constant image stays as it is.
    """
    n = img.shape[0]
    flat = img.reshape(n, -1).astype(np.int64)
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    first = hist[np.arange(n), np.argmax(hist > 0, axis=1)]
    total = flat.shape[1]
    denominator = np.where(first < total, total - first, 1)
    lut = np.rint((np.cumsum(hist, axis=1) - first[:, None]) * (255.0 / denominator[:, None]))
    lut = np.clip(lut, 0, 255)
    out = np.take_along_axis(lut, flat, axis=1).reshape(img.shape)
    return np.where((first == total)[:, None, None], img, out).astype(np.uint8)


def _chamfer_distance(sources: np.ndarray, cap: float) -> np.ndarray:
    """``min(distance to the nearest True of sources, cap)`` for each image of (N, H, W).

    The distance is OpenCV's ``distanceTransform(DIST_L2, 5)``: the cheapest path made of steps
    of cost 1 (edge neighbour), 1.4 (diagonal) and 2.1969 (knight's move), an approximation of
    the Euclidean distance. Computed by relaxing all steps at once until nothing changes; a path
    costing at most ``cap`` has at most ``cap`` steps, so at most ``cap + 1`` rounds are needed.
    """
    steps = [(dr, dc, 1.0) for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    steps += [(dr, dc, 1.4) for dr in (-1, 1) for dc in (-1, 1)]
    steps += [(dr, dc, 2.1969) for dr, dc in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))]
    n, h, w = sources.shape
    padded = np.full((n, h + 4, w + 4), np.inf)
    padded[:, 2:-2, 2:-2] = np.where(sources, 0.0, np.inf)
    for _ in range(int(np.ceil(cap)) + 1):
        inner = padded[:, 2:-2, 2:-2]
        best = inner.copy()
        for dr, dc, cost in steps:
            np.minimum(best, padded[:, 2 + dr : 2 + dr + h, 2 + dc : 2 + dc + w] + cost, out=best)
        if np.array_equal(best, inner):
            break
        padded[:, 2:-2, 2:-2] = best
    return np.minimum(padded[:, 2:-2, 2:-2], cap)


# --------------------------------------------------------------------------------------------
# The corruptions: uint8 (N, H, W, 3) in, float (N, H, W, 3) on the 0..255 scale out.
# --------------------------------------------------------------------------------------------

_Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _gaussian_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``x + N(0, c^2)``."""
    x = img / 255.0
    return np.clip(x + rng.normal(scale=_GAUSSIAN_NOISE[severity - 1], size=x.shape), 0, 1) * 255


def _shot_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``Poisson(c x) / c``: photon noise with ``c`` photons at full intensity."""
    c = _SHOT_NOISE[severity - 1]
    return np.clip(rng.poisson(img / 255.0 * c) / c, 0, 1) * 255


def _impulse_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: each value (pixel and channel) is set to 0 or 1 with probability ``c``."""
    x = img / 255.0
    flipped = rng.random(x.shape) < _IMPULSE_NOISE[severity - 1]
    salt = rng.random(x.shape) < 0.5
    return np.where(flipped, salt.astype(np.float64), x) * 255


def _speckle_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``x + x * N(0, c^2)``."""
    x = img / 255.0
    noise = rng.normal(scale=_SPECKLE_NOISE[severity - 1], size=x.shape)
    return np.clip(x + x * noise, 0, 1) * 255


def _gaussian_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma ``c`` px (edges repeated, kernel truncated at 4 sigma)."""
    return np.clip(_blur(img / 255.0, _GAUSSIAN_BLUR[severity - 1]), 0, 1) * 255


def _glass_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, quantise to uint8, shuffle pixels locally ``iterations`` times, blur again."""
    sigma, delta, iterations = _GLASS_BLUR[severity - 1]
    if delta != 1:  # _glass_shuffle's gather is exact only for displacements in {-1, 0}
        raise NotImplementedError("glass blur is implemented for a maximum displacement of 1")
    x = (_blur(img / 255.0, sigma) * 255).astype(np.uint8)
    n, h, w = x.shape[:3]
    lo = delta + 1
    for _ in range(iterations):
        # reference: dx, dy = randint(-delta, delta) (upper bound excluded) -> {-1, 0}
        offsets = rng.integers(-delta, delta, size=(2, n, h - lo, w - lo))
        x = _glass_shuffle(x, offsets[0], offsets[1], lo)
    return np.clip(_blur(x / 255.0, sigma), 0, 1) * 255


def _disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """Normalised disk ``x^2 + y^2 <= radius^2`` softened by a 3x3 Gaussian of ``alias_sigma``."""
    half = int(np.ceil(radius)) + 1  # one ring of zeros around the disk for the smoothing to fill
    grid = np.arange(-half, half + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-np.arange(-1, 2) ** 2 / (2.0 * alias_sigma**2))
    g /= g.sum()
    # zeros outside: the reference draws the disk on a 17x17 grid, far from that grid's border
    return ndimage.correlate(disk, np.outer(g, g), mode="constant")


def _defocus_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Convolution with an anti-aliased disk (OpenCV border reflect-101)."""
    kernel = _disk_kernel(*_DEFOCUS_BLUR[severity - 1])
    out = ndimage.correlate(img / 255.0, kernel[None, :, :, None], mode="mirror")
    return np.clip(out, 0, 1) * 255


def _motion_blur_corruption(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Motion blur along a uniform random angle in [-45, 45] degrees (truncated to 8 bits, as
    ImageMagick's 8-bit output is: checked against ImageMagick 6.9.11, >= 98% of values equal,
    the others off by one)."""
    radius, sigma = _MOTION_BLUR[severity - 1]
    angles = rng.uniform(-45, 45, size=int(img.shape[0]))
    return _motion_blur(img.astype(np.float64), radius, sigma, angles)


def _zoom_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mean of the image and its centre zooms by ``1, 1.01, ...`` (the reference's ``np.arange``)."""
    x = (img / 255.0).astype(np.float32)
    factors = np.arange(1, _ZOOM_BLUR_END[severity - 1], 0.01)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, float(factor))
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def _snow(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zoomed, thresholded Gaussian noise, motion-blurred into streaks, added twice (once turned
    by 180 degrees) to an image brightened towards ``1.5 * gray + 0.5``."""
    loc, scale, zoom, threshold, radius, sigma, blend = _SNOW[severity - 1]
    x = img / 255.0
    n, h, w = x.shape[:3]
    layer = rng.normal(loc=loc, scale=scale, size=(n, h, w, 1))
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)  # reference passes it as an 8-bit image
    angles = rng.uniform(-135, -45, size=int(n))
    layer = np.floor(_motion_blur(layer.astype(np.float64), radius, sigma, angles)) / 255.0  # 8-bit out
    x = blend * x + (1 - blend) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return np.clip(x + layer + layer[:, ::-1, ::-1], 0, 1) * 255


def _fog(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``(x + c f) * max(x) / (max(x) + c)`` with ``f`` a plasma fractal (per image)."""
    strength, decay = _FOG[severity - 1]
    x = img / 255.0
    n, h, w = x.shape[:3]
    size = 1 << int(np.ceil(np.log2(max(h, w))))  # reference: 32 for 32 px images
    fractal = _plasma_fractal(n, size, decay, rng)[:, :h, :w, None]
    top = x.max(axis=(1, 2, 3), keepdims=True)
    return np.clip((x + strength * fractal) * top / (top + strength), 0, 1) * 255


def _brightness(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value ``v -> min(v + c, 1)``."""
    hsv = _rgb_to_hsv(img / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + _BRIGHTNESS[severity - 1], 0, 1)
    return np.clip(_hsv_to_rgb(hsv), 0, 1) * 255


def _contrast(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``(x - m) c + m`` with ``m`` the per-image, per-channel mean."""
    x = img / 255.0
    mean = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - mean) * _CONTRAST[severity - 1] + mean, 0, 1) * 255


def _saturate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV saturation ``s -> clip(s a + b, 0, 1)``."""
    a, b = _SATURATE[severity - 1]
    hsv = _rgb_to_hsv(img / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * a + b, 0, 1)
    return np.clip(_hsv_to_rgb(hsv), 0, 1) * 255


def _jpeg_compression(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """PIL JPEG encode/decode at quality ``c`` (PIL defaults otherwise: 4:2:0 chroma)."""
    out = np.empty_like(img)
    for i, one in enumerate(img):
        buffer = io.BytesIO()
        Image.fromarray(one).save(buffer, format="JPEG", quality=_JPEG_QUALITY[severity - 1])
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out.astype(np.float64)


def _pixelate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """PIL box resize to ``int(H c)`` and back to ``H``."""
    h, w = img.shape[1:3]
    c = _PIXELATE[severity - 1]
    small = (int(w * c), int(h * c))
    out = np.empty_like(img)
    for i, one in enumerate(img):
        pil = Image.fromarray(one).resize(small, _BOX)
        out[i] = np.asarray(pil.resize((w, h), _BOX))
    return out.astype(np.float64)


def _elastic_transform(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Random affine warp (3 anchor points jittered by up to ``c2 H`` px), then a smooth random
    displacement field: uniform(-1, 1) noise blurred with sigma ``c1 H`` and scaled by ``c0 H``."""
    x = img / 255.0
    n, h, w = x.shape[:3]
    alpha, sigma, jitter = (v * h for v in _ELASTIC[severity - 1])
    # Affine: anchors (col, row) around the centre, as in the reference (square images)
    centre, half = float(h // 2), float(h // 3)
    src = np.array([[centre + half, centre + half], [centre + half, centre - half], [centre - half, centre - half]])
    dst = src[None] + rng.uniform(-jitter, jitter, size=(n, 3, 2))
    # dst_k = A src_k + t; solving for [A | t] from 3 point pairs, then pulling back every output
    # pixel: source = A^-1 (p - t) (OpenCV warpAffine semantics, bilinear, reflect-101 border)
    src_h = np.concatenate([src, np.ones((3, 1))], axis=1)  # (3, 3)
    forward = np.linalg.solve(src_h[None], dst).transpose(0, 2, 1)  # (n, 2, 3): [A | t]
    a_inv = np.linalg.inv(forward[:, :, :2])
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    p = np.stack([cols, rows], axis=-1)[None] - forward[:, None, None, :, 2]  # (n, h, w, 2)
    source = np.einsum("nij,nhwj->nhwi", a_inv, p)
    x = _bilinear(x, source[..., 1], source[..., 0], mode="mirror")
    # Elastic: displacement fields (reference order: dx then dy), half-sample symmetric border
    fields = rng.uniform(-1, 1, size=(2, n, h, w))
    dcol = _blur(fields[0], sigma, mode="reflect", truncate=3.0) * alpha
    drow = _blur(fields[1], sigma, mode="reflect", truncate=3.0) * alpha
    x = _bilinear(x, rows[None] + drow, cols[None] + dcol, mode="reflect")
    return np.clip(x, 0, 1) * 255


def _spatter(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blobs of thresholded blurred noise; severities 1-3 add shaded turquoise water, 4-5 paste
    opaque brown mud."""
    loc, scale, sigma, threshold, intensity, mud = _SPATTER[severity - 1]
    x = img / 255.0
    n, h, w = x.shape[:3]
    liquid = _blur(rng.normal(loc=loc, scale=scale, size=(n, h, w)), sigma)
    liquid[liquid < threshold] = 0
    if not mud:
        # The reference casts to uint8 without clipping, so values above 255 wrap around (x86
        # NumPy behaviour) and leave dark holes in the blobs; reproduced with an explicit modulo.
        liquid8 = ((liquid * 255).astype(np.int64) % 256).astype(np.uint8)
        dist = _chamfer_distance(_canny(liquid8, 50, 150), cap=20.0)
        # OpenCV keeps distances and their 3x3 mean in float32; the float32 rounding decides
        # which near-integer means truncate down, which histogram equalisation then amplifies
        dist = _box3(dist.astype(np.float32)).astype(np.float32).astype(np.uint8)
        dist = _equalize_hist(dist).astype(np.float64)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(ndimage.correlate(dist, emboss[None], mode="mirror"), 0, 255)
        dist = np.rint(_box3(dist))
        m = liquid8 * dist
        top = m.max(axis=(1, 2), keepdims=True)
        m = np.where(top > 0, m / np.where(top > 0, top, 1.0), 0.0) * intensity
        return np.clip(x + m[..., None] * _WATER_RGB, 0, 1) * 255
    m = _blur((liquid > threshold).astype(np.float64), intensity)
    m[m < 0.8] = 0
    m = m[..., None]
    return np.clip(x * (1 - m) + _MUD_RGB * m, 0, 1) * 255


_REGISTRY: dict[str, _Corruption] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_corruption,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}

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
