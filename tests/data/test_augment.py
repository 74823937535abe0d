"""Batched augmentations against torchvision's per-image functional transforms."""
import torch
import torchvision.transforms.functional as TF

from sharpkit.data.augment import random_crop, random_horizontal_flip, random_resized_crop


def _images(n=12, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_random_crop_equals_torchvision_pad_then_crop_at_the_same_offsets():
    x = _images()
    out = random_crop(x, padding=4, fill=128, generator=torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(3)
    tops = torch.randint(0, 9, (len(x),), generator=replay)
    lefts = torch.randint(0, 9, (len(x),), generator=replay)
    for i in range(len(x)):
        expected = TF.crop(TF.pad(x[i], [4], fill=128), int(tops[i]), int(lefts[i]), 32, 32)
        assert torch.equal(out[i], expected)
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_random_crop_uses_every_offset_and_the_fill_value():
    x = torch.zeros(2000, 3, 4, 4, dtype=torch.uint8)  # padding 4 can shift a 4 px image fully out
    out = random_crop(x, padding=4, fill=128, generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0, 128}
    # the image fully inside (offset 4,4) and fully shifted out of view both occur
    assert (out.flatten(1).max(1).values == 0).any() and (out.flatten(1).min(1).values == 128).any()


def test_horizontal_flip_flips_about_half_and_nothing_else():
    x = _images(400)
    out = random_horizontal_flip(x, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 0.4 < flipped.float().mean().item() < 0.6


def test_random_resized_crop_full_scale_square_is_the_identity():
    x = _images(4, size=64)
    out = random_resized_crop(x, 64, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(out, x.float(), atol=1e-3, rtol=0)


def test_random_resized_crop_matches_torchvision_crop_and_resize():
    """Recover the crop box by exhaustive search and compare to TF.resized_crop (bilinear, no
    antialias). Away from the border the two sample the same points; on the outermost pixels our
    grid reads the true neighbours outside the box where torchvision clamps to the box edge."""
    x = _images(6, size=64)
    out = random_resized_crop(x, 64, torch.Generator().manual_seed(5), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    # With scale fixed at 1/4 and ratio 1 the crop is 32x32; find its offset by exhaustive search.
    for i in range(len(x)):
        best = min(
            ((TF.resized_crop(x[i].float(), top, left, 32, 32, [64, 64], antialias=False) - out[i])
             [:, 1:-1, 1:-1].abs().max().item(), top, left)
            for top in range(33) for left in range(33)
        )
        assert best[0] < 1e-3, f"image {i}: no 32x32 crop reproduces the output (best max abs diff {best[0]:.2f})"


def test_augmentations_are_deterministic_per_generator_seed():
    x = _images()
    a = random_horizontal_flip(random_crop(x, 4, 128, torch.Generator().manual_seed(9)),
                               torch.Generator().manual_seed(9))
    b = random_horizontal_flip(random_crop(x, 4, 128, torch.Generator().manual_seed(9)),
                               torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_fused_crop_flip_equals_crop_then_flip():
    from sharpkit.data.augment import random_crop_flip

    x = _images(64)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    two_step = random_horizontal_flip(random_crop(x, 4, 128, g1), g1)
    fused = random_crop_flip(x, 4, 128, g2)
    assert torch.equal(two_step, fused)
    assert torch.equal(g1.get_state(), g2.get_state())  # the stream continues identically
