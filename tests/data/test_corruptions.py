"""Tests of sharpkit.data.corruptions against direct computations written here (numpy, PIL, colorsys,
scipy.ndimage), on small synthetic images (smooth colour fields with hard-edged rectangles)."""
from __future__ import annotations

import colorsys
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from sharpkit.data import image_ops as C
from sharpkit.data.corruptions import CIFAR_C_CORRUPTIONS, CORRUPTIONS, corrupt, write_corrupted_npy

RANDOM = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "fog",
    "elastic_transform",
    "speckle_noise",
    "spatter",
)
DETERMINISTIC = tuple(name for name in CORRUPTIONS if name not in RANDOM)

# Severity is not monotone in the mean absolute pixel change for these, by their CIFAR constants:
# saturate (s1: saturation x0.3, s2: x0.1, s3: x1.5), spatter (s1-3 translucent water, s4-5
# opaque mud on fewer pixels), elastic_transform (the random affine's jitter shrinks from 8 % to
# 3 % of the side while the elastic part grows), glass_blur (s1-3 are dominated by the same
# one-pixel shuffle; the blur sigma barely matters) and motion_blur (s3 (6, 2) and s4 (8, 2) are
# the same kernel up to taps of weight < 1e-7).
NON_MONOTONE = ("saturate", "spatter", "elastic_transform", "glass_blur", "motion_blur")


def _synthetic(n: int, side: int, seed: int) -> torch.Tensor:
    """Smooth random colour fields plus fine texture, with a few hard-edged rectangles: uint8
    (n, 3, side, side), a stand-in for natural images."""
    rng = np.random.default_rng(seed)

    def field(sigma: float) -> np.ndarray:
        f = ndimage.gaussian_filter(rng.normal(size=(n, side, side, 3)), sigma=(0, sigma, sigma, 0))
        return (f - f.min(axis=(1, 2, 3), keepdims=True)) / np.ptp(f, axis=(1, 2, 3), keepdims=True)

    images = 20 + 150 * field(side / 8) + 60 * field(1.0)
    for i in range(n):
        for _ in range(3):
            r, c = rng.integers(0, side - side // 4, size=2)
            images[i, r : r + side // 4, c : c + side // 4] = rng.integers(0, 256, size=3)
    return torch.from_numpy(np.round(images).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    return _synthetic(6, 32, seed=0)


@pytest.fixture(scope="module")
def large() -> torch.Tensor:
    return _synthetic(2, 64, seed=1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """The reference's final step: clip to [0, 255] and truncate (np.uint8 of a float)."""
    return np.clip(values, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Registry, shapes, randomness
# ---------------------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert len(CIFAR_C_CORRUPTIONS) == 19
    assert set(CIFAR_C_CORRUPTIONS) - set(CORRUPTIONS) == {"frost"}
    assert CORRUPTIONS == tuple(n for n in CIFAR_C_CORRUPTIONS if n != "frost")
    assert set(RANDOM) <= set(CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_and_change(name: str, small: torch.Tensor, large: torch.Tensor) -> None:
    for images in (small, large):
        for severity in range(1, 6):
            out = corrupt(images, name, severity, _gen(0))
            assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
            assert not torch.equal(out, images), (name, severity, images.shape[-1])


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_follow_the_generator(name: str, small: torch.Tensor) -> None:
    a = corrupt(small, name, 3, _gen(1))
    b = corrupt(small, name, 3, _gen(1))
    c = corrupt(small, name, 3, _gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_ignore_the_generator(name: str, small: torch.Tensor) -> None:
    assert torch.equal(corrupt(small, name, 4, _gen(1)), corrupt(small, name, 4, _gen(2)))


def test_default_generator_is_torchs(small: torch.Tensor) -> None:
    torch.manual_seed(123)
    a = corrupt(small, "gaussian_noise", 2)
    torch.manual_seed(123)
    b = corrupt(small, "gaussian_noise", 2)
    assert torch.equal(a, b)
    np_state = np.random.get_state()[1].copy()
    corrupt(small, "fog", 2, _gen(0))
    assert np.array_equal(np.random.get_state()[1], np_state)  # numpy's global RNG untouched


def test_empty_batch() -> None:
    empty = torch.zeros((0, 3, 32, 32), dtype=torch.uint8)
    assert corrupt(empty, "snow", 1, _gen(0)).shape == empty.shape


def _mean_abs_change(images: torch.Tensor, name: str) -> np.ndarray:
    x = images.double()
    return np.array([(corrupt(images, name, s, _gen(s)).double() - x).abs().mean().item() for s in range(1, 6)])


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n not in NON_MONOTONE])
def test_severity_is_monotone(name: str, small: torch.Tensor) -> None:
    change = _mean_abs_change(small, name)
    assert np.all(np.diff(change) > 0), change


def test_known_non_monotone_ones_are_really_non_monotone(small: torch.Tensor) -> None:
    # keeps NON_MONOTONE honest for the ones whose constants force it
    saturate = _mean_abs_change(small, "saturate")
    assert saturate[2] < saturate[1]  # x1.5 saturation changes less than x0.1
    elastic = _mean_abs_change(small, "elastic_transform")
    assert elastic[4] < elastic[0]


# ---------------------------------------------------------------------------------------------
# Exact references for the deterministic corruptions
# ---------------------------------------------------------------------------------------------

CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
JPEG_QUALITY = (80, 65, 58, 50, 40)
BOX = getattr(Image, "Resampling", Image).BOX


@pytest.mark.parametrize("severity", range(1, 6))
def test_contrast_matches_formula(severity: int, small: torch.Tensor, large: torch.Tensor) -> None:
    for images in (small, large):
        x = images.double() / 255
        mean = x.mean(dim=(2, 3), keepdim=True)  # per image and channel
        expected = _to_uint8((((x - mean) * CONTRAST[severity - 1] + mean).clamp(0, 1) * 255).numpy())
        got = corrupt(images, "contrast", severity).numpy()
        # float summation order may move a value across an integer: allow 1 level on a few values
        assert np.abs(got.astype(int) - expected).max() <= 1
        assert (got == expected).mean() > 0.99


def _per_pixel_hsv(images: torch.Tensor, edit) -> np.ndarray:
    """Apply ``edit(h, s, v) -> (h, s, v)`` per pixel through colorsys; uint8 NCHW result."""
    x = _hwc(images) / 255.0
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:3]):
        out[idx] = colorsys.hsv_to_rgb(*edit(*colorsys.rgb_to_hsv(*x[idx])))
    return _to_uint8(np.clip(out, 0, 1) * 255).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("severity", range(1, 6))
def test_brightness_and_saturate_match_colorsys(severity: int, small: torch.Tensor) -> None:
    c = BRIGHTNESS[severity - 1]
    a, b = SATURATE[severity - 1]
    cases = {
        "brightness": lambda h, s, v: (h, s, min(max(v + c, 0.0), 1.0)),
        "saturate": lambda h, s, v: (h, min(max(s * a + b, 0.0), 1.0), v),
    }
    for name, edit in cases.items():
        expected = _per_pixel_hsv(small, edit)
        got = corrupt(small, name, severity).numpy()
        assert np.abs(got.astype(int) - expected).max() <= 1, name
        assert (got == expected).mean() > 0.99, name


@pytest.mark.parametrize("severity", range(1, 6))
def test_pixelate_and_jpeg_match_pil(severity: int, small: torch.Tensor, large: torch.Tensor) -> None:
    for images in (small, large):
        side = images.shape[-1]
        small_side = int(side * PIXELATE[severity - 1])
        pixelated, jpeg = [], []
        for img in _hwc(images):
            pil = Image.fromarray(img)
            down = pil.resize((small_side, small_side), BOX)
            pixelated.append(np.asarray(down.resize((side, side), BOX)))
            buffer = io.BytesIO()
            pil.save(buffer, format="JPEG", quality=JPEG_QUALITY[severity - 1])
            jpeg.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
        assert np.array_equal(_hwc(corrupt(images, "pixelate", severity)), np.stack(pixelated))
        assert np.array_equal(_hwc(corrupt(images, "jpeg_compression", severity)), np.stack(jpeg))


def test_gaussian_blur_matches_scipy(small: torch.Tensor) -> None:
    x = _hwc(small) / 255.0
    for severity, sigma in enumerate((0.4, 0.6, 0.7, 0.8, 1.0), start=1):
        expected = np.stack(
            [np.stack([ndimage.gaussian_filter(im[..., k], sigma, mode="nearest") for k in range(3)], -1) for im in x]
        )
        got = _hwc(corrupt(small, "gaussian_blur", severity))
        assert np.abs(got.astype(int) - _to_uint8(expected * 255)).max() <= 1


def test_noise_statistics(small: torch.Tensor) -> None:
    # Gaussian noise std 0.10 (severity 5) on mid-grey pixels, impulse noise rate 0.07
    grey = torch.full((50, 3, 32, 32), 128, dtype=torch.uint8)
    noisy = corrupt(grey, "gaussian_noise", 5, _gen(0)).double() / 255
    assert abs(noisy.std().item() - 0.10) < 0.003
    flipped = corrupt(grey, "impulse_noise", 5, _gen(0))
    rate = ((flipped == 0) | (flipped == 255)).double().mean().item()
    assert abs(rate - 0.07) < 0.005


# ---------------------------------------------------------------------------------------------
# Helpers against independent references
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1.0, 1.04, 1.13, 1.25, 1.75, 2.25])
def test_clipped_zoom_matches_scipy_zoom(factor: float) -> None:
    x = np.random.default_rng(0).random((3, 32, 32, 2)).astype(np.float32)
    crop = int(np.ceil(32 / factor))
    top = (32 - crop) // 2
    expected = []
    for im in x:
        z = ndimage.zoom(im[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
        trim = (z.shape[0] - 32) // 2
        expected.append(z[trim : trim + 32, trim : trim + 32])
    np.testing.assert_allclose(C._clipped_zoom(x, factor), np.stack(expected), atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest"])
def test_bilinear_matches_map_coordinates(mode: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 9, 11, 3))
    rows, cols = rng.uniform(-4, 13, (2, 9, 11)), rng.uniform(-4, 15, (2, 9, 11))
    expected = np.empty_like(x)
    for n, k in np.ndindex(2, 3):
        expected[n, :, :, k] = ndimage.map_coordinates(x[n, :, :, k], [rows[n], cols[n]], order=1, mode=mode)
    np.testing.assert_allclose(C._bilinear(x, rows, cols, mode), expected, atol=1e-12)


def test_glass_shuffle_equals_the_reference_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 12, 12, 3)).astype(np.uint8)
    lo = 2
    drow, dcol = rng.integers(-1, 1, size=(2, 2, 12 - lo, 12 - lo))
    expected = x.copy()
    for n in range(2):
        img = expected[n]
        for h in range(11, lo - 1, -1):  # the reference's descending scan ...
            for w in range(11, lo - 1, -1):
                hp, wp = h + drow[n, h - lo, w - lo], w + dcol[n, h - lo, w - lo]
                img[h, w], img[hp, wp] = img[hp, wp], img[h, w]  # ... and its "swap" of views
    assert np.array_equal(C._glass_shuffle(x, drow, dcol, lo), expected)


def test_motion_blur_kernel_on_an_impulse() -> None:
    # out(y, x) = sum_i k_i img(y + round(i sin a), x + round(i cos a)): an impulse at column 20
    # leaves a trail to its left at angle 0 and straight up at 90 degrees
    img = np.zeros((2, 32, 32, 1))
    img[:, 16, 20] = 1.0
    radius, sigma = 6, 2.0
    k = np.exp(-np.arange(13) ** 2 / (2 * sigma**2))
    k /= k.sum()
    out = C._motion_blur(img, radius, sigma, np.array([0.0, 90.0]))
    expected = np.zeros((32, 32))
    expected[16, 20 - np.arange(13)] = k
    np.testing.assert_allclose(out[0, ..., 0], expected, atol=1e-12)
    expected = np.zeros((32, 32))
    expected[16 - np.arange(13), 20] = k
    np.testing.assert_allclose(out[1, ..., 0], expected, atol=1e-12)


def test_chamfer_distance_values() -> None:
    # OpenCV distanceTransform(DIST_L2, 5) from one source: 1, 1.4, 2.1969 per step type
    sources = np.zeros((1, 16, 16), dtype=bool)
    sources[0, 5, 5] = True
    d = C._chamfer_distance(sources, cap=20.0)[0]
    assert d[5, 5] == 0 and d[5, 6] == 1 and d[6, 6] == pytest.approx(1.4)
    assert d[6, 7] == pytest.approx(2.1969) and d[7, 7] == pytest.approx(2.8)
    assert d[8, 9] == pytest.approx(2 * 1.4 + 2.1969) and d[5, 15] == pytest.approx(10)
    empty = C._chamfer_distance(np.zeros((1, 8, 8), dtype=bool), cap=20.0)
    assert np.all(empty == 20.0)


def test_equalize_hist_formula() -> None:
    img = np.array([[[3, 3, 5, 9], [9, 9, 9, 12]]], dtype=np.uint8)  # levels 3 (x2), 5, 9 (x4), 12
    # lut(i) = round(255 * (cdf(i) - hist(3)) / (8 - hist(3)))
    expected = np.rint(255 * (np.array([2, 2, 3, 7, 7, 7, 7, 8]) - 2) / 6).reshape(1, 2, 4)
    assert np.array_equal(C._equalize_hist(img), expected.astype(np.uint8))
    flat = np.full((1, 4, 4), 7, dtype=np.uint8)
    assert np.array_equal(C._equalize_hist(flat), flat)


def test_plasma_fractal_range_and_smoothness() -> None:
    maps = C._plasma_fractal(4, 32, 3.0, np.random.default_rng(0))
    assert maps.shape == (4, 32, 32)
    assert np.allclose(maps.min(axis=(1, 2)), 0) and np.allclose(maps.max(axis=(1, 2)), 1)
    # larger decay = faster falling fine-scale noise = smoother map
    rough = C._plasma_fractal(4, 32, 1.75, np.random.default_rng(0))
    assert np.abs(np.diff(maps, axis=2)).mean() < np.abs(np.diff(rough, axis=2)).mean()


# ---------------------------------------------------------------------------------------------
# write_corrupted_npy
# ---------------------------------------------------------------------------------------------


def test_write_corrupted_npy_layout(tmp_path, small: torch.Tensor) -> None:
    labels = torch.tensor([3, 1, 4, 1, 5, 9])
    names = write_corrupted_npy(small, labels, tmp_path, corruptions=["contrast", "fog"], seed=7, progress=False)
    assert names == ["contrast", "fog"]
    n = small.shape[0]
    written = np.load(tmp_path / "labels.npy")
    assert written.dtype == np.int64 and np.array_equal(written, np.tile(labels.numpy(), 5))
    contrast = np.load(tmp_path / "contrast.npy")
    assert contrast.dtype == np.uint8 and contrast.shape == (5 * n, 32, 32, 3)
    for s in range(1, 6):
        assert np.array_equal(contrast[(s - 1) * n : s * n], _hwc(corrupt(small, "contrast", s)))
    fog = np.load(tmp_path / "fog.npy")
    assert fog.shape == (5 * n, 32, 32, 3)
    assert not np.array_equal(fog[:n], fog[n : 2 * n])
    meta = json.loads((tmp_path / "corruptions.json").read_text())
    assert meta["corruptions"] == ["contrast", "fog"] and meta["seed"] == 7
    assert meta["image_size"] == 32 and meta["num_images"] == n and "frost" in meta["note"]
    assert sorted(os.listdir(tmp_path)) == ["contrast.npy", "corruptions.json", "fog.npy", "labels.npy"]


def test_write_corrupted_npy_removes_temp_files_of_a_killed_writer(tmp_path, small: torch.Tensor) -> None:
    import subprocess
    import sys

    from sharpkit.utils import io

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    left = tmp_path / f".contrast.npy.{dead}@{io._host_tag()}.k1ll3d.tmp"  # a writer killed mid-array
    left.write_bytes(b"half")
    write_corrupted_npy(small, torch.arange(small.shape[0]), tmp_path, corruptions=["contrast"], progress=False)
    assert sorted(os.listdir(tmp_path)) == ["contrast.npy", "corruptions.json", "labels.npy"]


def test_write_corrupted_npy_subset_equals_full_run(tmp_path, large: torch.Tensor) -> None:
    labels = np.array([0, 1])
    write_corrupted_npy(large, labels, tmp_path / "a", corruptions=["snow", "gaussian_noise"], progress=False)
    write_corrupted_npy(large, labels, tmp_path / "b", corruptions=["gaussian_noise"], progress=False)
    write_corrupted_npy(large, labels, tmp_path / "c", corruptions=["gaussian_noise"], seed=1, progress=False)
    a = np.load(tmp_path / "a" / "gaussian_noise.npy")
    assert a.shape == (10, 64, 64, 3)
    assert np.array_equal(a, np.load(tmp_path / "b" / "gaussian_noise.npy"))
    assert not np.array_equal(a, np.load(tmp_path / "c" / "gaussian_noise.npy"))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_errors(small: torch.Tensor, tmp_path) -> None:
    with pytest.raises(ValueError, match="frost.*not available.*Available corruptions: gaussian_noise"):
        corrupt(small, "frost", 1)
    with pytest.raises(ValueError, match="`name`.*gaussian_noise.*'blur'"):
        corrupt(small, "blur", 1)
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match="`severity`.*1 to 5"):
            corrupt(small, "contrast", bad)
    with pytest.raises(ValueError, match="uint8 tensor of shape"):
        corrupt(small.float(), "contrast", 1)
    with pytest.raises(ValueError, match="uint8 tensor of shape"):
        corrupt(small[:, :1], "contrast", 1)
    with pytest.raises(ValueError, match="side 32 or 64"):
        corrupt(small[:, :, :28, :28], "contrast", 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        corrupt(_hwc(small), "contrast", 1)
    with pytest.raises(ValueError, match="frost"):
        write_corrupted_npy(small, np.zeros(6, dtype=int), tmp_path, corruptions=["frost"], progress=False)
    with pytest.raises(ValueError, match="list of names"):
        write_corrupted_npy(small, np.zeros(6, dtype=int), tmp_path, corruptions="fog", progress=False)
    with pytest.raises(ValueError, match="`labels`.*6 integers"):
        write_corrupted_npy(small, np.zeros(5, dtype=int), tmp_path, corruptions=["fog"], progress=False)
    with pytest.raises(ValueError, match="`seed`"):
        write_corrupted_npy(small, np.zeros(6, dtype=int), tmp_path, seed=-1, progress=False)
    assert os.listdir(tmp_path) == []  # nothing written on bad input
