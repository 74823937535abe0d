"""The 18 implemented CIFAR-10-C corruptions and their severity constants (``make_cifar_c.py``'s CIFAR ones).

Each corruption is ``f(img, severity, rng)``: uint8 images (N, H, W, 3) in, floats (N, H, W, 3) on the
0..255 scale out (:func:`sharpkit.data.corruptions.corrupt` clips and truncates them to uint8); all its
randomness comes from the numpy Generator ``rng``. :data:`_REGISTRY` maps each name to its function. They
are built from the primitives of :mod:`sharpkit.data.image_ops`.

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
  :func:`~sharpkit.data.image_ops._glass_shuffle`).
* Impulse noise flips each value independently with probability ``amount`` (half to 0, half to 1),
  as current scikit-image ``random_noise(mode="s&p")`` does (older versions drew a fixed number of
  coordinates instead).

Checked once against the reference operations themselves (OpenCV 5.0, scikit-image 0.26,
ImageMagick 6.9.11; not dependencies of sharpkit) fed with the same random draws: defocus,
Gaussian, glass and zoom blur, fog, brightness/saturate (HSV), elastic, snow, spatter and motion
blur agree to within one grey level (>= 98 % of values identical, all but motion blur > 99.9 %). The
random draws themselves are batched differently, so the arrays are not those of the published
CIFAR-10-C, only equally distributed.
"""
from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from .image_ops import (
    _bilinear,
    _blur,
    _box3,
    _canny,
    _chamfer_distance,
    _clipped_zoom,
    _equalize_hist,
    _glass_shuffle,
    _gray,
    _hsv_to_rgb,
    _motion_blur,
    _plasma_fractal,
    _rgb_to_hsv,
)

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
