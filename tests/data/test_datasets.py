"""The dataset registry: every on-disk layout written small in tmp_path, loaded, and compared."""

import os
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkit.data import datasets as ds
from sharpkit.data.base import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from sharpkit.data.datasets import (
    CIFAR_C_CORRUPTIONS,
    DATASETS,
    data_root,
    list_datasets,
    load_cifar10_c,
    load_dataset,
    load_tinyimagenet,
    register_dataset,
)
from sharpkit.data.formats import tinyimagenet

SHARED_NPZ = Path("../shared/data/cifar10-jpeg-20k.npz")


# ---------------------------------------------------------------------------------------------
# Writers of the official layouts (small)
# ---------------------------------------------------------------------------------------------


def _rng(seed=0):
    return np.random.default_rng(seed)


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(rng, n, num_classes, label_key):
    """A batch dict as in the official archives: bytes keys, (N, 3072) uint8 CHW rows."""
    return {
        b"batch_label": b"testing batch",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _py2_str(data):
    """A Python 2 str as cPickle writes it (SHORT_BINSTRING / BINSTRING)."""
    return (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<I", len(data))) + data


def _py2_uint8_array(array):
    """A 2-D uint8 array as numpy 1 under Python 2 pickled it: numpy.core names, raw bytes in a str."""
    n, width = array.shape
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + _py2_str(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")  # fmt: skip
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b")
            + b"\x87R(K\x01J" + struct.pack("<i", n) + b"J" + struct.pack("<i", width) + b"\x86"
            + dtype + b"\x89" + _py2_str(array.tobytes()) + b"tb")  # fmt: skip


def python2_pickle(path, batch):
    """A batch dict as the official archives hold it: protocol 2 from Python 2's cPickle, str keys,
    labels as a list of small ints, the images as a uint8 array."""
    out = b"\x80\x02}("
    for key, value in batch.items():
        out += _py2_str(key.encode())
        if isinstance(value, np.ndarray):
            out += _py2_uint8_array(value)
        elif isinstance(value, list):
            items = (b"K" + bytes([v]) if isinstance(v, int) else _py2_str(v.encode()) for v in value)
            out += b"](" + b"".join(items) + b"e"
        else:
            out += _py2_str(value.encode())
    Path(path).write_bytes(out + b"u.")


def write_cifar10(root, seed=0):
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = _rng(seed)
    batches = {f"data_batch_{i}": _cifar_batch(rng, 4, 10, b"labels") for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(rng, 3, 10, b"labels")
    for name, batch in batches.items():
        _pickle(folder / name, batch)
    names = [n.encode() for n in ds.CIFAR10_CLASSES]
    _pickle(
        folder / "batches.meta",
        {b"num_cases_per_batch": 4, b"label_names": names, b"num_vis": 3072},
    )
    return batches


def write_cifar100(root, seed=1):
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = _rng(seed)
    batches = {}
    for name, n in (("train", 6), ("test", 2)):
        batch = _cifar_batch(rng, n, 100, b"fine_labels")
        batch[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
        batches[name] = batch
        _pickle(folder / name, batch)
    names = [f"class_{i:03d}".encode() for i in range(100)]
    coarse = [f"super_{i}".encode() for i in range(20)]
    _pickle(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": coarse})
    return batches


def _two_tone(left, right, size=64):
    """An image whose left and right halves are flat colours: JPEG keeps it nearly exact."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = left
    image[:, size // 2 :] = right
    return image


TINY_WNIDS = ("n09999999", "n01443537", "n02124075")  # not sorted, as in the real wnids.txt
TINY_WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n02124075": "Egyptian cat",
    "n09999999": "test thing, other name",
    "n00000001": "unused synset",
}


def write_tinyimagenet(root, per_class=2, extra_classes=0):
    """tiny-imagenet-200 with two-tone JPEGs; one training image is grayscale.

    Returns the expected (left colour, right colour, label) per train and val image, labels
    indexing the sorted wnids.
    """
    folder = Path(root) / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "test" / "images").mkdir(parents=True)  # unlabelled official test split: unused
    wnids = TINY_WNIDS + tuple(f"n5{i:07d}" for i in range(extra_classes))
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in TINY_WORDS.items()))
    sorted_wnids = sorted(wnids)
    rng = _rng(2)
    train, val = [], []
    for wnid in sorted_wnids:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            left, right = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            if wnid == sorted_wnids[0] and i == 0:
                left, right = np.full(3, 40), np.full(3, 200)
                Image.fromarray(_two_tone(40, 200)[:, :, 0], mode="L").save(
                    images / f"{wnid}_{i}.JPEG", quality=100
                )
            else:
                Image.fromarray(_two_tone(left, right)).save(
                    images / f"{wnid}_{i}.JPEG", quality=100, subsampling=0
                )
            train.append((left, right, sorted_wnids.index(wnid)))
    lines = []
    for i, wnid in enumerate(["n02124075", "n01443537", "n02124075"]):
        left, right = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        Image.fromarray(_two_tone(left, right)).save(
            folder / "val" / "images" / f"val_{i}.JPEG", quality=100, subsampling=0
        )
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n")
        val.append((left, right, sorted_wnids.index(wnid)))
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return train, val


def write_cifar_c(folder, corruptions, n=4, seed=3, labels_repeated=True):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng(seed)
    labels = rng.integers(0, 10, n)
    np.save(folder / "labels.npy", np.tile(labels, 5) if labels_repeated else labels)
    data = {}
    for corruption in corruptions:
        data[corruption] = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        np.save(folder / f"{corruption}.npy", data[corruption])
    return data, labels


def write_npz(path, size=32, nchw=False, classes=True, seed=4):
    rng = _rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (6, size, size, 3), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8),
        "y_test": np.array([2, 1, 0]),
    }
    saved = dict(arrays)
    if nchw:
        saved["x_train"] = arrays["x_train"].transpose(0, 3, 1, 2)
        saved["x_test"] = arrays["x_test"].transpose(0, 3, 1, 2)
    if classes:
        saved["classes"] = np.array(["cat", "dog", "emu"])
    np.savez(path, **saved)
    return arrays


# ---------------------------------------------------------------------------------------------
# Data root and registry
# ---------------------------------------------------------------------------------------------


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHARPKIT_DATA", raising=False)
    assert data_root() == tmp_path / "home" / ".cache" / "sharpkit" / "data"
    monkeypatch.setenv("SHARPKIT_DATA", "")  # empty counts as unset
    assert data_root() == tmp_path / "home" / ".cache" / "sharpkit" / "data"
    monkeypatch.setenv("SHARPKIT_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.chdir(tmp_path)
    assert data_root("rel/data") == tmp_path / "rel" / "data"


def test_sharpkit_data_env_is_used_and_root_argument_wins(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "env")
    monkeypatch.setenv("SHARPKIT_DATA", str(tmp_path / "env"))
    assert load_dataset("cifar10").x_train.shape == (20, 3, 32, 32)
    with pytest.raises(
        FileNotFoundError, match=str(tmp_path / "elsewhere" / "cifar-10-batches-py")
    ):
        load_dataset("cifar10", root=tmp_path / "elsewhere")


def test_registry_lists_the_protocol_datasets():
    names = list_datasets()
    for name in ("cifar10", "cifar100", "tinyimagenet", "cifar10-c", "cifar100-c", "npz", "digits"):
        assert name in names and DATASETS[name].description
    assert len(CIFAR_C_CORRUPTIONS) == len(set(CIFAR_C_CORRUPTIONS)) == 19
    assert len(ds.CIFAR100_CLASSES) == 100 and list(ds.CIFAR100_CLASSES) == sorted(
        ds.CIFAR100_CLASSES
    )


# One small on-disk copy per registered name: a new registered dataset must add one here.
_MAKERS = {
    "cifar10": lambda root: (write_cifar10(root), "cifar10")[1],
    "cifar100": lambda root: (write_cifar100(root), "cifar100")[1],
    "tinyimagenet": lambda root: (write_tinyimagenet(root, 1, extra_classes=197), "tinyimagenet")[
        1
    ],
    "cifar10-c": lambda root: (write_cifar_c(root / "CIFAR-10-C", ["fog"]), "cifar10-c")[1],
    "cifar100-c": lambda root: (write_cifar_c(root / "CIFAR-100-C", ["fog"]), "cifar100-c")[1],
    "npz": lambda root: (write_npz(root / "d.npz"), f"npz:{root / 'd.npz'}")[1],
    "digits": lambda root: "digits",
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_registered_dataset_matches_its_spec(name, tmp_path):
    assert name in _MAKERS, f"add a small on-disk copy of {name!r} to _MAKERS"
    spec = DATASETS[name]
    dataset = load_dataset(_MAKERS[name](tmp_path), root=tmp_path)
    assert isinstance(dataset, ds.CorruptedImageDataset) == spec.corrupted
    if spec.num_classes is not None:
        assert len(dataset.classes) == spec.num_classes
    if spec.image_size is not None:
        images = next(iter(dataset.images.values())) if spec.corrupted else dataset.x_train
        assert images.shape[-2:] == (spec.image_size, spec.image_size)
    if spec.mean is not None:
        assert (dataset.mean, dataset.std) == (spec.mean, spec.std)


def test_unknown_and_malformed_names():
    with pytest.raises(ValueError, match="'cifar10'.*'digits'.*'npz:<path>'") as info:
        load_dataset("imagenet-1k")
    assert "'cifar10-c:<path>'" in str(info.value) and "'imagenet-1k'" in str(info.value)
    with pytest.raises(ValueError, match="takes no path"):
        load_dataset("cifar10:/tmp/x")
    with pytest.raises(ValueError, match="npz:<path>"):
        load_dataset("npz:")
    with pytest.raises(ValueError, match="npz:<path>"):
        load_dataset("npz")
    with pytest.raises(ValueError, match="string"):
        load_dataset(10)
    with pytest.raises(ValueError, match="download"):
        load_dataset("digits", download="yes")


def test_register_dataset_adds_a_name_and_warns_on_overwrite(tmp_path):
    calls = []

    def loader(root, download, path):
        calls.append((root, download, path))
        return ds.load_digits()

    try:
        register_dataset("toy-test", num_classes=10, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
                         description="toy", path="optional")(loader)  # fmt: skip
        assert "toy-test" in list_datasets()
        load_dataset("TOY-TEST:some/where", root=tmp_path, download=True)
        assert calls == [(tmp_path, True, "some/where")]
        with pytest.warns(UserWarning, match="already registered"):
            register_dataset("toy-test", num_classes=10, image_size=32, mean=CIFAR_MEAN,
                             std=CIFAR_STD, description="toy")(loader)  # fmt: skip
        with pytest.raises(ValueError, match="takes no path"):
            load_dataset("toy-test:x")
    finally:
        DATASETS.pop("toy-test", None)
    with pytest.raises(ValueError, match="without ':'"):
        register_dataset("a:b", num_classes=1, image_size=1, mean=None, std=None, description="")
    with pytest.raises(ValueError, match="path"):
        register_dataset("ok", num_classes=1, image_size=1, mean=None, std=None, description="",
                         path="sometimes")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# ---------------------------------------------------------------------------------------------


def test_cifar10_pickles_round_trip(tmp_path):
    batches = write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=tmp_path)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    rows = np.concatenate([b[b"data"] for b in train])
    assert data.name == "cifar10" and data.classes == ds.CIFAR10_CLASSES
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape == (20, 3, 32, 32)
    assert data.x_test.shape == (3, 3, 32, 32)
    # Row layout of the official files: 1024 red, 1024 green, 1024 blue values, each row-major.
    for i, c, h, w in [(0, 0, 0, 0), (7, 1, 5, 30), (19, 2, 31, 3)]:
        assert data.x_train[i, c, h, w].item() == rows[i, c * 1024 + h * 32 + w]
    assert torch.equal(data.x_train.reshape(20, -1), torch.from_numpy(rows))
    assert data.y_train.dtype == torch.int64
    assert data.y_train.tolist() == sum((b[b"labels"] for b in train), [])
    assert data.y_test.tolist() == batches["test_batch"][b"labels"]
    assert torch.equal(data.x_test.reshape(3, -1), torch.from_numpy(batches["test_batch"][b"data"]))
    assert (data.mean, data.std) == (CIFAR_MEAN, CIFAR_STD)


def test_cifar100_uses_fine_labels(tmp_path):
    batches = write_cifar100(tmp_path)
    data = load_dataset("cifar100", root=tmp_path)
    assert data.num_classes == 100 and data.classes[:2] == ("class_000", "class_001")
    assert data.y_train.tolist() == batches["train"][b"fine_labels"]
    assert data.y_test.tolist() == batches["test"][b"fine_labels"]
    assert torch.equal(data.x_train.reshape(6, -1), torch.from_numpy(batches["train"][b"data"]))
    assert data.x_test.shape == (2, 3, 32, 32)


def test_missing_cifar_says_where_and_how(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    _pickle(tmp_path / "cifar-10-batches-py" / "batches.meta", {b"label_names": []})
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_1" in message
    assert "batches.meta" not in message  # only the absent files are listed
    assert "download=True" in message and "SHARPKIT_DATA" in message and "--data-root" in message
    assert "--download" not in message  # no such flag: only those that exist are named
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cifar-100-python")):
        load_dataset("cifar100", root=tmp_path)


def test_cifar_pickle_with_a_missing_key_is_named(tmp_path):
    write_cifar10(tmp_path)
    _pickle(
        tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": np.zeros((1, 3072), np.uint8)}
    )
    with pytest.raises(ValueError, match="'labels'.*test_batch"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_batches_pickled_by_python2_and_by_every_python3_protocol_load(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    rng = _rng(5)
    names = list(ds.CIFAR10_CLASSES)
    official = {"batch_label": "training batch 1 of 5", "labels": [3, 9, 0],
                "data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "filenames": ["a.png"] * 3}  # fmt: skip
    write_cifar10(tmp_path)
    for protocol in ("python2", 0, 2, 4, 5):
        if protocol == "python2":
            python2_pickle(folder / "data_batch_1", official)
            python2_pickle(folder / "batches.meta", {"label_names": names})
        else:
            batch = {k.encode(): v for k, v in official.items()}
            batch[b"data"] = official["data"]
            with open(folder / "data_batch_1", "wb") as f:
                pickle.dump(batch, f, protocol=protocol)
            with open(folder / "batches.meta", "wb") as f:
                pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, f,
                            protocol=protocol)  # fmt: skip
        data = load_dataset("cifar10", root=tmp_path)
        assert torch.equal(data.x_train[:3].reshape(3, -1), torch.from_numpy(official["data"]))
        assert data.y_train[:3].tolist() == [3, 9, 0] and data.classes == ds.CIFAR10_CLASSES


class _RunsCode:
    """What a crafted batch holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_crafted_cifar_pickle_cannot_run_code(tmp_path, protocol):
    write_cifar10(tmp_path)
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(crafted, "wb") as f:
        pickle.dump({b"data": _RunsCode(marker), b"labels": []}, f, protocol=protocol)
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
    message = str(info.value)
    assert f"Refused to load {crafted}" in message and "posix.system" in message
    assert "not a genuine CIFAR batch" in message and "cifar-10-python.tar.gz" in message


def test_a_stand_in_builtin_refuses_what_cifar_never_pickles(tmp_path):
    """_codecs.encode is let through only as the latin1 encoder Python 3's bytes pickling uses."""
    write_cifar10(tmp_path)
    crafted = tmp_path / "cifar-10-batches-py" / "test_batch"
    crafted.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(ValueError, match=r"Refused to load .*test_batch: .*_codecs.encode\(str, 'rot13'\)"):
        load_dataset("cifar10", root=tmp_path)


def test_a_truncated_cifar_batch_is_named_with_the_fix(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert f"{path} is damaged" in message and "cut short" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_cifar_download_uses_torchvision_and_reports_failures(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:  # stands in for the network: extracts the archive's files
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_cifar10(root)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_dataset("cifar10", root=tmp_path / "new", download=True)
    assert calls == [(str(tmp_path / "new"), True, True)] and len(data.y_train) == 20
    load_dataset("cifar10", root=tmp_path / "new", download=True)
    assert len(calls) == 1  # present files are not fetched again

    class OfflineCIFAR100:
        def __init__(self, root, train, download):
            raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", OfflineCIFAR100)
    with pytest.raises(RuntimeError, match="Could not download CIFAR-100.*no route to host"):
        load_dataset("cifar100", root=tmp_path, download=True)


# ---------------------------------------------------------------------------------------------
# TinyImageNet
# ---------------------------------------------------------------------------------------------


def _assert_two_tone(images, expected, tolerance=3):
    assert images.shape == (len(expected), 3, 64, 64)
    for image, (left, right, _) in zip(images.int(), expected, strict=True):
        left_target = torch.as_tensor(np.asarray(left)).int().view(3, 1, 1)
        right_target = torch.as_tensor(np.asarray(right)).int().view(3, 1, 1)
        assert (image[:, :, :32] - left_target).abs().max() <= tolerance
        assert (image[:, :, 32:] - right_target).abs().max() <= tolerance


def test_tinyimagenet_layout_round_trip(tmp_path):
    train, val = write_tinyimagenet(tmp_path)
    data = load_dataset("tinyimagenet", root=tmp_path)
    assert data.name == "tinyimagenet" and (data.mean, data.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # Labels index the sorted wnids; names are the first synonym in words.txt.
    assert data.classes == ("goldfish", "Egyptian cat", "test thing")
    assert data.y_train.tolist() == [label for *_, label in train]
    assert data.y_test.tolist() == [label for *_, label in val] == [1, 0, 1]
    _assert_two_tone(data.x_train, train)
    _assert_two_tone(data.x_test, val)
    gray = data.x_train[0]  # the grayscale JPEG: three identical channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])


def test_tinyimagenet_cache_is_reused_and_refreshed(tmp_path, monkeypatch):
    write_tinyimagenet(tmp_path)
    folder = tmp_path / "tiny-imagenet-200"
    first = load_tinyimagenet(tmp_path)
    cache = folder / "sharpkit-cache.npz"
    assert cache.is_file() and not list(folder.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    # Patched where the loader looks it up (sharpkit.data.datasets only re-exports it).
    with monkeypatch.context() as m:
        m.setattr(tinyimagenet, "_decode_jpegs", no_decoding)
        again = load_tinyimagenet(tmp_path)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert first.classes == again.classes

    # A new training image dates its folder after the cache: decoded again, cache rewritten.
    images = folder / "train" / "n01443537" / "images"
    Image.fromarray(_two_tone(0, 255)).save(images / "n01443537_new.JPEG", quality=100)
    os.utime(images, (1e9, 1e9))  # a distinct mtime, whatever the file system's clock resolution
    refreshed = load_tinyimagenet(tmp_path)
    assert len(refreshed.y_train) == 7 and refreshed.y_train.tolist().count(0) == 3
    with monkeypatch.context() as m:
        m.setattr(tinyimagenet, "_decode_jpegs", no_decoding)
        assert len(load_tinyimagenet(tmp_path).y_train) == 7  # the rewritten cache is valid


def test_tinyimagenet_without_cache_writes_none(tmp_path):
    write_tinyimagenet(tmp_path, per_class=1)
    data = load_tinyimagenet(tmp_path, cache=False)
    assert len(data.y_train) == 3
    assert not (tmp_path / "tiny-imagenet-200" / "sharpkit-cache.npz").exists()


def test_tinyimagenet_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "tiny-imagenet-200")):
        load_dataset("tinyimagenet", root=tmp_path)
    write_tinyimagenet(tmp_path, per_class=1)
    odd = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match="val_0.JPEG is 32x32"):
        load_tinyimagenet(tmp_path, cache=False)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn123\n"
    )
    with pytest.raises(ValueError, match="line 1 .*'val_0.JPEG\\\\tn123'"):
        load_tinyimagenet(tmp_path, cache=False)


def test_tinyimagenet_download_fetches_the_official_zip(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, **kwargs):
        calls.append((url, download_root))
        write_tinyimagenet(download_root, per_class=1)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    data = load_tinyimagenet(tmp_path, download=True, cache=False)
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", str(tmp_path))]
    assert data.num_classes == 3


# ---------------------------------------------------------------------------------------------
# CIFAR-10-C / CIFAR-100-C
# ---------------------------------------------------------------------------------------------


def test_cifar10_c_severities_round_trip(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    data, labels = write_cifar_c(folder, ["saturate", "fog", "gaussian_noise"])
    np.save(folder / "not_a_corruption.npy", np.zeros((5, 32, 32, 3), np.uint8))
    result = load_dataset("cifar10-c", root=tmp_path)
    assert isinstance(result, ds.CorruptedImageDataset) and result.name == "cifar10-c"
    assert result.corruptions == ("gaussian_noise", "fog", "saturate")  # protocol order
    assert result.labels.dtype == torch.int64 and result.labels.tolist() == labels.tolist()
    assert result.classes == ds.CIFAR10_CLASSES and (result.mean, result.std) == (
        CIFAR_MEAN,
        CIFAR_STD,
    )
    for corruption, rows in data.items():
        assert result.images[corruption].shape == (5, 4, 3, 32, 32)
        for severity in range(1, 6):
            images, y = result.split(corruption, severity)
            # Severity s is rows (s - 1) * N .. s * N - 1, stored HWC.
            expected = rows[(severity - 1) * 4 : severity * 4].transpose(0, 3, 1, 2)
            assert torch.equal(images, torch.from_numpy(np.ascontiguousarray(expected)))
            assert torch.equal(y, result.labels)


def test_cifar_c_subset_and_explicit_folder(tmp_path, monkeypatch):
    data, labels = write_cifar_c(tmp_path / "gen" / "c100", ["fog", "snow"], labels_repeated=False)
    monkeypatch.chdir(tmp_path)
    result = load_dataset("cifar100-c:gen/c100", root=tmp_path / "unused")
    assert result.name == "cifar100-c:gen/c100" and result.corruptions == ("snow", "fog")
    assert result.classes == ds.CIFAR100_CLASSES and result.labels.tolist() == labels.tolist()
    subset = load_cifar10_c(folder="gen/c100", corruptions=["fog", "fog"])
    assert subset.corruptions == ("fog",)
    assert torch.equal(
        subset.images["fog"][4, 1], torch.from_numpy(data["fog"][4 * 4 + 1].transpose(2, 0, 1))
    )
    with pytest.raises(FileNotFoundError, match="lacks the requested corruptions.*frost"):
        load_cifar10_c(folder="gen/c100", corruptions=["fog", "frost"])
    with pytest.raises(ValueError, match="`corruptions`.*'gaussian_noise'.*'blur'"):
        load_cifar10_c(folder="gen/c100", corruptions=["blur"])
    with pytest.raises(ValueError, match="list of corruption names"):
        load_cifar10_c(folder="gen/c100", corruptions="fog")


def test_cifar_c_bad_files_are_explained(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c(folder, ["fog"])
    np.save(folder / "snow.npy", np.zeros((19, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="snow.npy.*multiple of 5.*19 rows"):
        load_cifar10_c(tmp_path)
    np.save(folder / "snow.npy", np.zeros((30, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="snow.npy to match labels.npy.*30 rows"):
        load_cifar10_c(tmp_path)
    np.save(folder / "snow.npy", np.zeros((20, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="snow.npy as uint8.*float32"):
        load_cifar10_c(tmp_path)
    np.save(folder / "snow.npy", np.zeros((20, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.arange(20) % 10)  # severities disagree on the labels
    with pytest.raises(ValueError, match="same 4 labels"):
        load_cifar10_c(tmp_path)


def test_cifar_c_files_that_are_cut_or_no_npy_are_named_with_the_fix(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c(folder, ["fog"])
    fog = folder / "fog.npy"
    fog.write_bytes(fog.read_bytes()[:300])
    with pytest.raises(ValueError, match=rf"{fog} is damaged .*cut short.*CIFAR-10-C.tar again"):
        load_cifar10_c(tmp_path)
    (folder / "labels.npy").write_text("1,2,3\n")
    with pytest.raises(ValueError) as info:
        load_cifar10_c(tmp_path)
    assert f"Expected {folder / 'labels.npy'} to be a .npy array" in str(info.value)
    assert "allow_pickle" not in str(info.value) and "sharpkit corrupt" in str(info.value)


def test_sets_written_by_sharpkit_corruptions_load(tmp_path):
    from sharpkit.data.corruptions import write_corrupted_npy

    clean = ds.load_digits()
    images, labels = clean.x_test[:6], clean.y_test[:6]
    write_corrupted_npy(
        images, labels, tmp_path / "gen", corruptions=["brightness"], progress=False
    )
    result = load_dataset(f"cifar10-c:{tmp_path / 'gen'}")
    assert result.corruptions == ("brightness",) and torch.equal(result.labels, labels)
    assert result.images["brightness"].shape == (5, 6, 3, 32, 32)
    assert not torch.equal(result.split("brightness", 5)[0], images)


def test_load_clean_and_load_corrupted_accept_only_their_kind(tmp_path):
    from sharpkit.data import load_clean, load_corrupted
    from sharpkit.data.corruptions import write_corrupted_npy

    clean = ds.load_digits()
    write_corrupted_npy(clean.x_test[:4], clean.y_test[:4], tmp_path / "gen", corruptions=["brightness"],
                        progress=False)
    corrupted_name = f"cifar10-c:{tmp_path / 'gen'}"
    assert isinstance(load_clean("digits"), ds.ImageDataset)
    assert isinstance(load_corrupted(corrupted_name), ds.CorruptedImageDataset)
    with pytest.raises(ValueError, match="which is a corrupted test set"):
        load_clean(corrupted_name)
    with pytest.raises(ValueError, match="'digits', which is a clean dataset"):
        load_corrupted("digits")


def test_missing_cifar_c_says_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10-c", root=tmp_path)
    assert str(tmp_path / "CIFAR-10-C") in str(info.value) and "labels.npy" in str(info.value)
    assert "download=True" in str(info.value) and "--download" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        load_dataset(f"cifar100-c:{tmp_path / 'nowhere'}")


def test_cifar_c_download_goes_to_zenodo(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, **kwargs):
        calls.append(url)
        write_cifar_c(Path(download_root) / "CIFAR-100-C", ["brightness"])

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    result = load_dataset("cifar100-c", root=tmp_path, download=True)
    assert calls == ["https://zenodo.org/record/3555552/files/CIFAR-100-C.tar"]
    assert result.corruptions == ("brightness",)


# ---------------------------------------------------------------------------------------------
# npz:<path>
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nchw", [False, True])
def test_npz_round_trip_nhwc_and_nchw(tmp_path, monkeypatch, nchw):
    arrays = write_npz(tmp_path / "small.npz", nchw=nchw)
    monkeypatch.chdir(tmp_path)
    data = load_dataset("npz:small.npz")  # relative to the current directory
    assert data.name == "npz:small.npz" and data.classes == ("cat", "dog", "emu")
    assert torch.equal(data.x_train, torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2))
    assert torch.equal(data.x_test, torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2))
    assert data.y_train.dtype == torch.int64 and data.y_test.tolist() == [2, 1, 0]
    assert (data.mean, data.std) == (CIFAR_MEAN, CIFAR_STD)


def test_npz_without_classes_and_64_pixels_uses_imagenet_normalisation(tmp_path):
    write_npz(tmp_path / "big.npz", size=64, classes=False)
    data = load_dataset(f"npz:{tmp_path / 'big.npz'}")
    assert data.classes == ("0", "1", "2") and data.image_size == 64
    assert (data.mean, data.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_npz_errors_name_file_key_and_shape(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent.npz")):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    arrays = write_npz(tmp_path / "d.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=arrays["x_test"])
    with pytest.raises(ValueError, match="y_test missing"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **{**arrays, "x_test": arrays["x_test"][:, :, :, 0]})
    with pytest.raises(ValueError, match=r"`x_test`.*\(N, H, W, 3\).*\(3, 32, 32\)"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **{**arrays, "x_train": arrays["x_train"] / 255.0})
    with pytest.raises(ValueError, match="`x_train`.*float64.*astype"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **{**arrays, "y_train": arrays["y_train"][:5]})
    with pytest.raises(ValueError, match=r"`y_train`.*shape \(6,\).*\(5,\)"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **arrays, classes=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="at least 3"):
        load_dataset(f"npz:{bad}")


def test_npz_labels_must_be_dense_unless_the_file_gives_the_number_of_classes(tmp_path):
    """One stray label 10**6 among 0..9 would make a 1,000,001-class model: refused, naming the labels and
    the fix; a file that says how many classes it has may leave some without images."""
    arrays = write_npz(tmp_path / "d.npz", classes=False)
    bad = tmp_path / "bad.npz"
    y_train = np.array([0, 1, 2, 0, 1, 10**6])
    np.savez(bad, **{**arrays, "y_train": y_train})
    with pytest.raises(ValueError) as error:
        load_dataset(f"npz:{bad}")
    message = str(error.value)
    assert str(bad) in message and "0-2, 1000000" in message and "1000001 classes" in message
    assert "999997 of them without a single image" in message and "1000000 (1 image)" in message
    assert "np.unique(labels, return_inverse=True)" in message and "num_classes" in message
    np.savez(bad, **{**arrays, "y_train": np.array([0, 1, 3, 0, 1, 3]), "y_test": np.array([3, 1, 0])})
    with pytest.raises(ValueError, match=r"0-1, 3\. The largest label 3 would make a model of 4 classes"):
        load_dataset(f"npz:{bad}")
    # the number of classes given in the file: gaps allowed, labels below it
    np.savez(bad, **{**arrays, "y_train": np.array([0, 1, 3, 0, 1, 3]), "num_classes": np.int64(5)})
    data = load_dataset(f"npz:{bad}")
    assert data.num_classes == 5 and data.classes == ("0", "1", "2", "3", "4")
    np.savez(bad, **{**arrays, "y_train": y_train, "num_classes": np.int64(10)})
    with pytest.raises(ValueError, match=r"largest label is 1000000 and the file gives num_classes = 10"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **{**arrays, "classes": np.array(["a", "b", "c"]), "num_classes": np.int64(4)})
    with pytest.raises(ValueError, match=r"num_classes = 4 and 3 names"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **{**arrays, "num_classes": np.array([1.5])})
    with pytest.raises(ValueError, match=r"`num_classes`.*one integer"):
        load_dataset(f"npz:{bad}")
    np.savez(bad, **{**arrays, "y_train": y_train, "classes": np.array(["a", "b", "c"])})
    with pytest.raises(ValueError, match=r"largest label is 1000000 and the file gives 3 names in `classes`"):
        load_dataset(f"npz:{bad}")


def test_npz_that_is_damaged_or_no_npz_gets_our_message_not_numpys(tmp_path):
    write_npz(tmp_path / "d.npz")
    blob = (tmp_path / "d.npz").read_bytes()
    cases = {
        "cut.npz": (blob[: len(blob) // 2], "is a damaged .npz file"),
        # One byte changed inside x_train's data: the archive opens, the member's checksum fails.
        "changed.npz": (blob[:200] + bytes([blob[200] ^ 0xFF]) + blob[201:], "is a damaged .npz file"),
        "text.npz": (b"x_train,y_train\n1,2\n", "but it is not a zip archive"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "single.npy", np.zeros(3, np.uint8))
    cases["single.npy"] = (None, "but it is a single .npy array")
    for name, (_, expected) in cases.items():
        with pytest.raises(ValueError) as info:
            load_dataset(f"npz:{tmp_path / name}")
        message = str(info.value)
        assert str(tmp_path / name) in message and expected in message, message
        assert "Re-create the dataset file" in message and "allow_pickle" not in message


@pytest.mark.skipif(not SHARED_NPZ.is_file(), reason="shared CIFAR-10 JPEG subset not present")
def test_shared_cifar10_jpeg_subset_loads():
    data = load_dataset(f"npz:{SHARED_NPZ}")
    assert data.x_train.shape == (20000, 3, 32, 32) and data.x_test.shape == (10000, 3, 32, 32)
    assert data.y_train.shape == (20000,) and data.y_test.shape == (10000,)
    assert data.classes == ds.CIFAR10_CLASSES and (data.mean, data.std) == (CIFAR_MEAN, CIFAR_STD)
    assert torch.bincount(data.y_train).tolist() == [2000] * 10
    with np.load(SHARED_NPZ) as raw:
        assert torch.equal(data.x_test[123], torch.from_numpy(raw["x_test"][123]).permute(2, 0, 1))


# ---------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------


def _bilinear_reference(images, size):
    """Upsampling with align_corners=False written out: source x = (i + 0.5) * in / out - 0.5."""
    n_in = images.shape[-1]
    src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, None)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    rows = images[:, low, :] * (1 - frac)[:, None] + images[:, high, :] * frac[:, None]
    return rows[:, :, low] * (1 - frac) + rows[:, :, high] * frac


def test_digits_split_pixels_and_determinism():
    from sklearn.datasets import load_digits as sklearn_digits

    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.x_train.shape == (1297, 3, 32, 32) and first.x_test.shape == (500, 3, 32, 32)
    assert first.classes == tuple("0123456789") and (first.mean, first.std) == (
        CIFAR_MEAN,
        CIFAR_STD,
    )
    for a, b in [(first.x_train, second.x_train), (first.y_train, second.y_train),
                 (first.x_test, second.x_test), (first.y_test, second.y_test)]:  # fmt: skip
        assert torch.equal(a, b)
    assert torch.equal(first.x_train[:, 0], first.x_train[:, 2])  # 3 identical channels

    bunch = sklearn_digits()
    reference = np.round(_bilinear_reference(bunch.images * 255 / 16, 32)).astype(np.uint8)
    # Train + test together are exactly the 1,797 converted images with their labels.
    loaded = torch.cat([first.x_train[:, 0], first.x_test[:, 0]]).reshape(1797, -1).numpy()
    loaded_labels = torch.cat([first.y_train, first.y_test]).numpy()
    expected = reference.reshape(1797, -1)

    def sort_rows(images, labels):
        rows = np.concatenate([labels[:, None], images.astype(np.int64)], axis=1)
        return rows[np.lexsort(rows.T[::-1])]

    assert np.array_equal(sort_rows(loaded, loaded_labels), sort_rows(expected, bunch.target))
    # Stratified: each class's test count is its proportional share, rounded.
    counts = np.bincount(bunch.target)
    test_counts = np.bincount(first.y_test.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - counts * 500 / 1797) < 1)
