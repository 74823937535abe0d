"""The on-device loader: order, augmentation streams, normalisation, subsets."""
import pytest
import torch

from sharpkit.data.loader import DeviceLoader, subset_indices

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def _data(n=50):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n)


def _loader(augmentation="none", seed=0, **kw):
    x, y = _data()
    return DeviceLoader(x, y, 16, MEAN, STD, shuffle=True, augmentation=augmentation, seed=seed, **kw)


def _labels(loader, epoch):
    loader.set_epoch(epoch)
    return torch.cat([y for _, y in loader])


def test_every_item_once_per_epoch_and_new_order_each_epoch():
    loader = _loader()
    e0, e1 = _labels(loader, 0), _labels(loader, 1)
    assert sorted(e0.tolist()) == list(range(50)) and sorted(e1.tolist()) == list(range(50))
    assert not torch.equal(e0, e1)
    assert len(loader) == 4 and [len(y) for _, y in loader] == [16, 16, 16, 2]


def test_same_seed_same_order_with_and_without_augmentation():
    plain, augmented, other_seed = _loader("none"), _loader("crop_flip"), _loader("none", seed=1)
    for epoch in range(3):
        assert torch.equal(_labels(plain, epoch), _labels(augmented, epoch))
    assert not torch.equal(_labels(plain, 0), _labels(other_seed, 0))


def test_same_seed_same_augmented_images():
    a, b = _loader("crop_flip"), _loader("crop_flip")
    a.set_epoch(2), b.set_epoch(2)
    for (xa, _), (xb, _) in zip(a, b):
        assert torch.equal(xa, xb)


def test_iterating_again_advances_the_epoch_and_set_epoch_replays():
    loader = _loader()
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(first, second)
    assert torch.equal(_labels(loader, 0), first) and torch.equal(_labels(loader, 1), second)


def test_normalisation_is_x_over_255_minus_mean_over_std():
    x, y = _data()
    loader = DeviceLoader(x, y, 64, MEAN, STD)
    batch, labels = next(iter(loader))
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(batch, expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(labels, y)


def test_subset_is_fixed_sorted_and_checked():
    a, b = subset_indices(100, 10), subset_indices(100, 10)
    assert torch.equal(a, b) and len(a.unique()) == 10 and torch.equal(a, a.sort().values)
    assert torch.equal(subset_indices(100, None), torch.arange(100))
    with pytest.raises(ValueError, match="between 1 and 100"):
        subset_indices(100, 101)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(augmentation="rotate"), "augmentation"),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    x, y = _data()
    args = dict(batch_size=8, augmentation="none")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DeviceLoader(x, y, args["batch_size"], MEAN, STD, augmentation=args["augmentation"])
