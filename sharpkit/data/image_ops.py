"""The numpy image primitives the corruptions are built from, each batched over a stack of images.

Images are float arrays (N, H, W, C) on the [0, 1] scale unless a function says otherwise (the Canny,
histogram-equalisation and distance functions take (N, H, W) uint8 or bool). They stand in for the library
calls of the reference script ``make_cifar_c.py`` (scikit-image's Gaussian, scipy's zoom, ImageMagick's
motion blur, OpenCV's Canny, ``distanceTransform`` and ``equalizeHist``) and reproduce those libraries'
rounding where it changes a result; :mod:`sharpkit.data.corruption_functions` says how each is checked.
They touch no random state: the one function that draws (:func:`_plasma_fractal`) takes a numpy Generator.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


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
