import builtins
import errno
import io
import os
import tarfile
import threading
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from course_lib import data
from course_lib.augment import random_crop_flip
from course_lib.data import (RAW, DataUnavailableError, GPULoader, ImageSet, OfflineSamplesWarning, cache, download,
                             first_of_each_class, load_cifar10_jpeg, load_dataset, load_samples, normalize, sources,
                             subset, take)


@pytest.mark.parametrize("name,split,n,classes", [
    ("cifar10", "train", 2000, 10), ("cifar10", "test", 870, 10), ("cifar100", "train", 1117, 100),
    ("cifar100", "test", 916, 100), ("svhn", "train", 883, 10), ("svhn", "test", 200, 10)])
def test_committed_samples(name, split, n, classes):
    d = load_dataset(name, split, source="samples")
    assert d.images.shape == (n, 3, 32, 32) and d.images.dtype == torch.uint8
    assert d.labels.shape == (n,) and d.labels.dtype == torch.int64
    assert d.num_classes == classes and int(d.labels.max()) < classes
    assert d.indices is not None and len(torch.unique(d.indices)) == n        # distinct official positions
    assert "committed real samples" in d.source


def test_samples_are_real_cifar10_in_official_order():
    d = load_dataset("cifar10", "train", source="samples")
    official = np.load(data.SAMPLES_DIR / "cifar10_all_labels.npz")["train"]
    assert torch.equal(d.labels, torch.from_numpy(official[d.indices.numpy()]))   # labels agree with the split
    assert (d.class_counts() == 200).all()
    assert d.images.float().std() > 40                                          # not blank or synthetic


def test_svhn_test_standin_is_disjoint_from_train():
    train, test = load_dataset("svhn", "train", source="samples"), load_dataset("svhn", "test", source="samples")
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    assert "STAND-IN test set" in test.source and "training* images" in test.source
    assert "of the 26,032" not in test.source          # said once, one way: these are not official test images


def test_auto_falls_back_to_samples_loudly_when_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_WARNED", set())
    with pytest.warns(OfflineSamplesWarning, match="SMALL committed sample"):
        d = load_dataset("cifar100", "test", root=tmp_path)
    assert len(d) == 916 and "committed real samples" in d.source
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # said once per process, not at every load
        load_dataset("cifar100", "test", root=tmp_path)
        load_dataset("svhn", "train", root=tmp_path)


@pytest.mark.expects_network_attempt
def test_failed_download_falls_back(tmp_path, monkeypatch, network_guard):
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.setattr(sources, "_WARNED", set())
    monkeypatch.setattr(download, "_FAILED", {})
    with pytest.warns(OfflineSamplesWarning, match="download failed"):
        d = load_dataset("cifar10", "test", root=tmp_path)
    assert network_guard, "the download was attempted (and blocked by the guard)"
    assert len(d) == 870


def test_strict_torchvision_source_says_how_to_fix(tmp_path):
    with pytest.raises(DataUnavailableError, match="(?s)could not be downloaded.*Fix.*source='samples'"):
        load_dataset("svhn", "train", root=tmp_path, source="torchvision")


def test_bad_names():
    with pytest.raises(ValueError, match="Unknown data set 'mnist'.*cifar10"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("cifar10", "val")
    with pytest.raises(DataUnavailableError, match="No CIFAR-10 JPEG copy"):
        load_dataset("cifar10", source="jpeg", root="/nonexistent")


def test_subset_is_stratified_deterministic_and_nested(cifar10_samples):
    train, _ = cifar10_samples
    a, b = subset(train, 30, seed=1), subset(train, 30, seed=1)
    assert (a.class_counts() == 30).all() and torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, subset(train, 30, seed=2).indices)
    small = subset(train, 10, seed=1)
    assert set(small.indices.tolist()) <= set(a.indices.tolist())              # nested for one seed
    assert torch.equal(a.indices, a.indices.sort().values)                     # original order kept
    for i, idx in enumerate(a.indices):                                        # images travel with their labels
        j = int((train.indices == idx).nonzero())
        assert torch.equal(a.images[i], train.images[j]) and a.labels[i] == train.labels[j]


def test_subset_asking_too_much_names_the_class_and_fix():
    c100 = load_dataset("cifar100", "train", source="samples")
    with pytest.raises(ValueError, match=r"(?s)class '.+' has only 5.*at most 5.*allow_fewer"):
        subset(c100, 6)
    partial = subset(c100, 6, allow_fewer=True)
    assert int(partial.class_counts().max()) == 6 and int(partial.class_counts().min()) == 5
    with pytest.raises(ValueError):
        subset(c100, 0)


def test_take(cifar10_samples):
    _, test = cifar10_samples
    assert len(take(test, 100, seed=0)) == 100 and take(test, None) is test and take(test, 10**6) is test
    for bad in (-5, 0, 2.5, True):
        with pytest.raises(ValueError, match="whole number"):
            take(test, bad)


def test_first_of_each_class(cifar10_samples):
    _, test = cifar10_samples
    first = first_of_each_class(test, 4)
    assert first.labels.tolist() == [0, 1, 2, 3]
    for c in range(4):
        assert int(first.indices[c]) == int(test.indices[(test.labels == c).nonzero()[0]])


def test_imageset_validates():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), "cifar10", "train", ["a"], "x")
    with pytest.raises(ValueError, match="labels"):
        ImageSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), "cifar10", "train",
                 ["a"], "x")
    with pytest.raises(ValueError, match=r"run from 0 to 10.*\[0, 10\)"):   # a label past the last class
        ImageSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 10]), "cifar10", "train",
                 [str(i) for i in range(10)], "x")


@pytest.mark.expects_network_attempt
def test_a_source_that_failed_is_not_asked_again_for_every_split(tmp_path, monkeypatch, network_guard, capsys):
    """No connection: each host is tried once in the process and said once, not once per split and source."""
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.setattr(sources, "_WARNED", set())
    monkeypatch.setattr(download, "_FAILED", {})
    with pytest.warns(OfflineSamplesWarning, match="download failed"):
        for name in ("cifar10", "cifar100", "svhn"):
            for split in ("train", "test"):
                assert "committed real samples" in load_dataset(name, split, root=tmp_path).source
    hosts = {attempt.split("'")[1] for attempt in network_guard}
    assert len(network_guard) == len(hosts) == 4, network_guard   # the Hub, Ray's bucket, two official hosts
    err = capsys.readouterr().err
    assert err.count("was not used") == 4 and err.count("Nothing more is asked of") == 4
    with pytest.raises(DataUnavailableError, match="could not be downloaded.*cannot connect"):
        load_dataset("svhn", "test", root=tmp_path, source="official")     # naming a source asks it again
    assert len(network_guard) == 5


# ---------------------------------------------------------------------------------------------------------------
# The cache: checked against the data set's facts and committed samples; never deleted by a reader without the lock

def _official_like(name: str = "cifar10", split: str = "test") -> ImageSet:
    """A whole split that passes every check the package can make: the committed samples at their official indices,
    every official label, and blank images elsewhere."""
    samples = load_samples(name, split)
    labels = torch.from_numpy(np.load(data.SAMPLES_DIR / f"{name}_all_labels.npz")[split]).long()
    images = torch.zeros(len(labels), 3, 32, 32, dtype=torch.uint8)
    images[samples.indices] = samples.images
    return ImageSet(images, labels, name, split, samples.class_names, "a verified copy", torch.arange(len(labels)))


def test_a_reader_never_deletes_a_cache_entry_that_is_being_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "_WARNED", set())
    entry, files = _official_like(), cache.paths(tmp_path, "cifar10", "test")
    writing = threading.Event()

    def writer():                                  # a download finishing in another process: it holds the lock
        with cache.lock(tmp_path, "cifar10", "test", "Saving") as held:
            assert held
            cache.save(entry, tmp_path)
            files["sidecar"].unlink()              # the arrays are written, the sidecar not yet
            writing.set()
            time.sleep(0.5)
            cache.save(entry, tmp_path)

    thread = threading.Thread(target=writer)
    thread.start()
    writing.wait(10)
    loaded = load_dataset("cifar10", "test", root=tmp_path)           # offline: the cache or the samples
    thread.join()
    assert loaded.source == "a verified copy" and torch.equal(loaded.images, entry.images)
    assert "damaged" not in capsys.readouterr().err and all(path.exists() for path in files.values())


def _wrong_pixel(entry):
    index = int(load_samples("cifar10", "test").indices[7])
    entry.images[index, 1, 5, 5] ^= 1
    return entry, f"image {index} differs from the committed sample"


def _labels_swapped(entry):
    a = int((entry.labels == 0).nonzero()[0])
    b = int((entry.labels == 1).nonzero()[0])
    entry.labels[[a, b]] = entry.labels[[b, a]]                      # the class counts stay right
    return entry, "labels are not in the official order"


def _hundred_names(entry):
    return replace(entry, class_names=[f"class {i}" for i in range(100)]), "lists 100 class names"


@pytest.mark.parametrize("spoil", [_wrong_pixel, _labels_swapped, _hundred_names])
def test_a_cache_entry_that_is_not_the_official_split_is_refused(tmp_path, capsys, spoil):
    """Its own checksums match (it was written so), but it is not CIFAR-10's test split."""
    entry, message = spoil(_official_like())
    cache.save(entry, tmp_path)
    with pytest.raises(DataUnavailableError, match="No cached copy"):
        load_dataset("cifar10", "test", root=tmp_path, source="cache")
    err = capsys.readouterr().err
    assert "does not match the official data set" in err and message in err and "deleted" in err
    assert not cache.exists(tmp_path, "cifar10", "test")
    cache.save(_official_like(), tmp_path)
    assert load_dataset("cifar10", "test", root=tmp_path, source="cache").source == "a verified copy"


def _read_only(monkeypatch, root) -> None:
    """Every write under ``root`` fails as on a read-only file system (the tests run as root, whom chmod does
    not stop)."""
    root = str(root)

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    def guard(real):
        return lambda path, *a, **k: refuse(path) if str(path).startswith(root) else real(path, *a, **k)

    for name in ("unlink", "mkdir", "replace", "rename", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    real_open, real_os_open = builtins.open, os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
    monkeypatch.setattr(os, "open", lambda path, flags, *a, **k: refuse(path) if str(path).startswith(root)
                        and flags & writes else real_os_open(path, flags, *a, **k))
    def open_(path, mode="r", *args, **kwargs):
        if str(path).startswith(root) and set(mode) & set("wax+"):
            refuse(path)
        return real_open(path, mode, *args, **kwargs)

    for module in (builtins, io):
        monkeypatch.setattr(module, "open", open_)


def test_a_damaged_cache_entry_in_a_read_only_folder_is_reported_not_a_trace(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "_WARNED", set())
    cache.save(_official_like(), tmp_path)
    files = cache.paths(tmp_path, "cifar10", "test")
    raw = bytearray(files["images"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    files["images"].write_bytes(bytes(raw))
    _read_only(monkeypatch, tmp_path)
    with pytest.warns(OfflineSamplesWarning):
        loaded = load_dataset("cifar10", "test", root=tmp_path)
    assert "committed real samples" in loaded.source
    err = capsys.readouterr().err
    assert "damaged or incomplete" in err and "read-only" in err and "delete its three files" in err
    assert files["images"].exists()
    monkeypatch.setenv("COURSE_OFFLINE", "0")                         # nor can anything be downloaded there
    with pytest.raises(DataUnavailableError, match="read-only, so nothing can be downloaded"):
        load_dataset("cifar10", "test", root=tmp_path, source="mirror")


def test_a_damaged_torchvision_copy_is_named_not_blamed_on_offline_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "_WARNED", set())
    monkeypatch.setattr(sources, "_NOTED", set())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"cut short")
    with pytest.warns(OfflineSamplesWarning, match="(?s)files in .*cifar-10-batches-py are damaged.*md5 check: "
                                                   "test_batch.*COURSE_OFFLINE is set"):
        load_dataset("cifar10", "test", root=tmp_path)
    err = capsys.readouterr().err
    assert "missing: data_batch_1" in err and "failing torchvision's md5 check: test_batch" in err
    assert "Fix: delete" in err
    with pytest.raises(DataUnavailableError, match="damaged or incomplete.*Fix: delete"):
        load_dataset("cifar10", "test", root=tmp_path, source="torchvision")


# ---------------------------------------------------------------------------------------------------------------
# The CIFAR-10 JPEG copy: a generated archive whose pixels encode each image's official index.

def _code(pos: int) -> tuple[int, int]:
    return (pos % 64) * 4, (pos // 64) * 1          # flat colours survive JPEG to within a few levels


def test_jpeg_copy_rebuilds_the_official_order(tmp_path):
    official = np.load(data.SAMPLES_DIR / "cifar10_all_labels.npz")["test"]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    archive = tmp_path / "cifar10-jpeg" / "copy.tar.xz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:xz", preset=0) as tar:
        for c in range(10):
            for k, pos in enumerate(np.flatnonzero(official == c)):
                r, g = _code(int(pos))
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (r, g, 128)).save(buf, "JPEG", quality=95)
                info = tarfile.TarInfo(f"test/{names[c]}/{k:04d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
    d = load_dataset("cifar10", "test", root=tmp_path)            # found by "auto" before any download
    assert "JPEG copy" in d.source and len(d) == 10000
    assert torch.equal(d.labels, torch.from_numpy(official))
    for pos in [0, 1, 777, 5000, 9999]:
        r, g = _code(pos)
        pixel = d.images[pos, :, 16, 16].int()
        assert abs(int(pixel[0]) - r) <= 3 and abs(int(pixel[1]) - g) <= 3, pos
    with pytest.raises(DataUnavailableError, match="expected 50000"):
        load_cifar10_jpeg(archive, "train")
    # The same copy as a folder: stray files are skipped, a renamed or undecodable image is named.
    folder = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    (folder / "test" / "cat" / "._3.jpg").write_bytes(b"macOS metadata")
    assert torch.equal(load_cifar10_jpeg(folder, "test").labels, torch.from_numpy(official))
    (folder / "test" / "cat" / "0003.jpg").rename(folder / "test" / "cat" / "5000.jpg")
    with pytest.raises(DataUnavailableError, match=r"1 missing, e.g. cat/0003.jpg; 1 unexpected, e.g. cat/5000.jpg"):
        load_cifar10_jpeg(folder, "test")
    (folder / "test" / "cat" / "5000.jpg").rename(folder / "test" / "cat" / "0003.jpg")
    (folder / "test" / "dog" / "0007.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataUnavailableError, match=r"dog/0007.jpg cannot be decoded"):
        load_cifar10_jpeg(folder, "test")


# ---------------------------------------------------------------------------------------------------------------
# Augmentation and the loader

def _reference_crop_flip(img: torch.Tensor, dy: int, dx: int, flip: bool, pad: int) -> torch.Tensor:
    padded = F.pad(img, (pad, pad, pad, pad))
    out = padded[:, dy:dy + img.shape[1], dx:dx + img.shape[2]]
    return out.flip(-1) if flip else out


def test_random_crop_flip_matches_a_per_image_reference():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    shifts = torch.randint(0, 9, (16, 2), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    out = random_crop_flip(images, shifts, flips, pad=4)
    for b in range(16):
        expected = _reference_crop_flip(images[b], int(shifts[b, 0]), int(shifts[b, 1]), bool(flips[b]), 4)
        assert torch.equal(out[b], expected)


def test_loader_eval_is_plain_normalised_data(cifar10_samples):
    _, test = cifar10_samples
    loader = GPULoader(test, 100, train=False)
    xs, ys = zip(*loader)
    assert len(loader) == 9 and len(xs) == 9 and xs[-1].shape == (70, 3, 32, 32)
    x, y = torch.cat(xs), torch.cat(ys)
    assert torch.equal(y, test.labels)
    mean = torch.tensor(data.DATASETS["cifar10"].mean).view(1, 3, 1, 1)
    std = torch.tensor(data.DATASETS["cifar10"].std).view(1, 3, 1, 1)
    assert torch.allclose(x, (test.images.float() / 255 - mean) / std, atol=1e-5)
    assert abs(float(x.mean())) < 0.15 and abs(float(x.std()) - 1) < 0.15       # the stats fit the data


def test_loader_train_is_seeded_per_epoch(cifar10_samples):
    train, _ = cifar10_samples
    small = subset(train, 5)
    a = GPULoader(small, 16, train=True, seed=3, drop_last=False)
    b = GPULoader(small, 16, train=True, seed=3, drop_last=False)
    first = [x for x, _ in a]
    assert all(torch.equal(p, q) for p, q in zip(first, (x for x, _ in b)))
    a.set_epoch(1)
    assert not torch.equal(first[0], next(iter(a))[0])
    labels = torch.cat([y for _, y in b])
    assert sorted(labels.tolist()) == sorted(small.labels.tolist())             # each image once per epoch


def test_loader_drop_last_and_no_flip_for_svhn():
    svhn = load_dataset("svhn", "train", source="samples")
    loader = GPULoader(svhn, 100, train=True, drop_last=True)
    assert loader.drop_last and len(loader) == 8 and not loader.hflip
    assert len(GPULoader(svhn, 100, train=True)) == 9          # the loader keeps every image unless told
    # With no padding (and SVHN's no flips), augmentation must give back exactly the images themselves.
    ident = GPULoader(svhn, 1000, train=True, pad=0, preprocess=RAW)
    x, _ = next(iter(ident))
    assert len(x) == len(svhn)
    got = sorted(bytes((x * 255).round().to(torch.uint8)[i].flatten().tolist()) for i in range(len(x)))
    want = sorted(bytes(svhn.images[i].flatten().tolist()) for i in range(len(svhn)))
    assert got == want


def test_normalize_disabled_gives_unit_range():
    x = normalize(torch.tensor([[[[0, 255]]] * 3], dtype=torch.uint8), "cifar10", enabled=False)
    assert x.min() == 0 and x.max() == 1
