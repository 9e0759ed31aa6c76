"""The verified download path, over real HTTP without the internet.

A real HTTP server on 127.0.0.1 (started here, with Range support, throttling, stalls and cut connections) serves
copies in the mirrors' formats, built from the committed samples: "full-size" splits with the committed images at
their official indices (and plain filler images elsewhere), plus deliberately wrong ones. The mirror base URLs and
torchvision's official URLs point at it, so every fallback runs to its end (the official download answers 404).
"""
from __future__ import annotations

import hashlib
import io
import pickle
import re
import tarfile
import threading
import time
from dataclasses import replace
from functools import lru_cache
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

from conftest import QuietHandler, closed_port, local_http_server
from course_lib.data import DATASETS, DataUnavailableError, ImageSet, OfflineSamplesWarning, cache, download, \
    load_dataset, load_samples, mirrors, sources

HUB = "/datasets/{repo}/resolve/main/{path}"


# ---------------------------------------------------------------------------------------------------------------
# The local server

class Site:
    """What the server serves (``files``), how (``rules`` per path), and what it was asked (``requests``)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.rules: dict[str, dict] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.redirects: dict[str, str] = {}
        self.release = threading.Event()          # set at teardown: stalled responses end
        self.url = ""

    def hub(self, name: str, split: str, data: bytes, cdn: bool = False, **rule) -> str:
        """Serve ``data`` as the Hub copy of a split; with ``cdn``, the Hub's URL redirects (302) to another path,
        as the real Hub does. Returns the path that serves the bytes."""
        copy = mirrors.HUB_COPIES[name]
        path = HUB.format(repo=copy.repo, path=copy.files[split])
        if cdn:
            self.redirects[path], path = f"/cdn{path}", f"/cdn{path}"
        self.files[path], self.rules[path] = data, rule
        return path

    def asked(self, path: str) -> list[str | None]:
        """The Range header of every request for ``path`` (None: no Range)."""
        return [r for p, r in self.requests if p == path]


def _handler(site: Site):
    class Handler(QuietHandler):
        def do_GET(self):
            path = urlsplit(self.path).path
            site.requests.append((path, self.headers.get("Range")))
            if path in site.redirects:
                self.send_response(302)
                self.send_header("Location", site.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path not in site.files:
                self.send_error(404, "Not Found")
                return
            data, rule = site.files[path], site.rules.setdefault(path, {})
            start = self._start(data, rule)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:][:rule.pop("cut_after", None)]           # a cut connection happens once
            try:
                self._send(body, rule)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _start(self, data: bytes, rule: dict) -> int:
            match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if not match or rule.get("ignore_range"):
                self.send_response(200)
                return 0
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            return start

        def _send(self, body: bytes, rule: dict) -> None:
            step = 16384
            for i in range(0, len(body), step):
                if "stall_after" in rule and i >= rule["stall_after"]:
                    site.release.wait(30)
                    return
                self.wfile.write(body[i:i + step])
                if rule.get("rate"):
                    time.sleep(step / rule["rate"])

    return Handler


@pytest.fixture
def site(monkeypatch, tmp_path):
    """A running server; mirrors and torchvision's official URLs point at it; downloads allowed, text progress."""
    s = Site()
    with local_http_server(_handler(s)) as s.url:
        monkeypatch.setitem(mirrors.BASE_URLS, "hub", s.url)
        monkeypatch.setitem(mirrors.BASE_URLS, "ray-s3", f"{s.url}/ray")
        for cls in (tvd.CIFAR10, tvd.CIFAR100):
            monkeypatch.setattr(cls, "url", f"{s.url}/official/{cls.filename}")
        monkeypatch.setattr(tvd.SVHN, "split_list", {k: [f"{s.url}/official/{v[1]}", v[1], v[2]]
                                                     for k, v in tvd.SVHN.split_list.items()})
        monkeypatch.setenv("COURSE_OFFLINE", "0")
        monkeypatch.setenv("COURSE_PLAIN_PROGRESS", "1")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setattr(download, "LIMITS", download.Limits(timeout_s=5.0, min_rate=0))
        monkeypatch.setattr(sources, "_WARNED", set())
        monkeypatch.setattr(download, "_FAILED", {})          # no source failed yet in this "process"
        yield s
        s.release.set()               # a stalled answer returns before the server shuts down


# ---------------------------------------------------------------------------------------------------------------
# Copies in the Hub's Parquet format

def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


FILLERS = [_png(np.full((32, 32, 3), 16 * k + 3, np.uint8)) for k in range(8)]   # flat: never a real photo


@lru_cache(maxsize=None)
def _sample_pngs(name: str, split: str) -> tuple[np.ndarray, tuple[bytes, ...], np.ndarray]:
    """(official indices, PNG bytes, labels) of the committed samples."""
    s = load_samples(name, split)
    return s.indices.numpy(), tuple(_png(im) for im in s.images.permute(0, 2, 3, 1).numpy()), s.labels.numpy()


def fake_split(name: str, split: str, size: int | None = None) -> tuple[list[bytes], np.ndarray]:
    """(PNG bytes, labels) of a whole split: the committed images at their official indices, fillers elsewhere.
    CIFAR-10 and CIFAR-100 get their official labels (shipped with the samples)."""
    size = size or DATASETS[name].sizes[split]
    index, pngs, sample_labels = _sample_pngs(name, split)
    rows = [FILLERS[i % len(FILLERS)] for i in range(size)]
    for i, png in zip(index, pngs):
        rows[i] = png
    if name in ("cifar10", "cifar100"):
        return rows, np.load(sources.SAMPLES_DIR / f"{name}_all_labels.npz")[split]
    labels = np.arange(size) % 10                         # SVHN is not balanced: its tests set the class counts
    labels[index] = sample_labels
    return rows, labels


def parquet(name: str, rows: list[bytes], labels: np.ndarray) -> bytes:
    """A Parquet file in the Hub copy's columns: an image struct {bytes, path} and an int64 label."""
    copy = mirrors.HUB_COPIES[name]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({copy.image_column: pa.array([{"bytes": r, "path": None} for r in rows], image_type),
                      copy.label_column: pa.array(np.asarray(labels, np.int64))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@lru_cache(maxsize=None)
def good_cifar10_test() -> bytes:
    return parquet("cifar10", *fake_split("cifar10", "test"))


def _leftovers(root) -> list[str]:
    """Files left in the cache and the downloads folder."""
    return sorted(p.name for d in ("course_cache", "downloads") for p in (root / d).glob("*") if p.is_file())


def _falls_back_to_samples(root, name: str = "cifar10", split: str = "test") -> ImageSet:
    with pytest.warns(OfflineSamplesWarning, match="download failed"):
        data = load_dataset(name, split, root=root)
    assert "committed real samples" in data.source
    return data


# ---------------------------------------------------------------------------------------------------------------
# A good copy

def test_good_copy_is_verified_cached_and_then_loaded_from_the_cache(site, tmp_path, capsys):
    path = site.hub("cifar10", "test", good_cifar10_test())
    data = load_dataset("cifar10", "test", root=tmp_path)
    assert "Hugging Face Hub copy uoft-cs/cifar10 (Parquet), verified" in data.source
    assert "pixel-identical to the 870 committed images" in data.source and "official label order" in data.source
    assert len(data) == 10000 and (data.class_counts() == 1000).all()
    samples = load_samples("cifar10", "test")
    assert torch.equal(data.images[samples.indices], samples.images)
    out = capsys.readouterr().out
    assert "CIFAR-10 test from the Hugging Face Hub copy uoft-cs/cifar10: downloaded" in out and "MB/s" in out
    assert _leftovers(tmp_path) == ["cifar10-test.images.npy", "cifar10-test.json", "cifar10-test.labels.npy"]

    start = time.perf_counter()
    again = load_dataset("cifar10", "test", root=tmp_path)
    assert time.perf_counter() - start < 2.0
    assert len(site.asked(path)) == 1, "the second load comes from the cache, not the server"
    assert torch.equal(again.images, data.images) and torch.equal(again.labels, data.labels)
    assert again.source == data.source and load_dataset("cifar10", "test", tmp_path, source="cache").source


def test_cifar10_train_in_the_hubs_file_order_is_put_back_in_the_official_order(site, tmp_path):
    rows, labels = fake_split("cifar10", "train")
    hub_order = np.concatenate([np.arange(b * 10000, (b + 1) * 10000) for b in (3, 2, 1, 4, 0)])  # batches 4,3,2,5,1
    site.hub("cifar10", "train", parquet("cifar10", [rows[i] for i in hub_order], labels[hub_order]))
    data = load_dataset("cifar10", "train", root=tmp_path, source="mirror")
    assert "its 5 files of 10,000 images put in the official order" in data.source
    samples = load_samples("cifar10", "train")
    assert torch.equal(data.images[samples.indices], samples.images)
    assert torch.equal(data.labels, torch.from_numpy(labels))


# ---------------------------------------------------------------------------------------------------------------
# Wrong copies: each refused with a message naming what differed, then the next source, finally the samples

def _altered_pixel() -> bytes:
    rows, labels = fake_split("cifar10", "test")
    index = int(load_samples("cifar10", "test").indices[100])
    image = np.asarray(Image.open(io.BytesIO(rows[index]))).copy()
    image[5, 7, 1] ^= 1
    rows[index] = _png(image)
    return parquet("cifar10", rows, labels), f"image {index} differs from the committed sample"


def _shuffled() -> tuple[bytes, str]:
    rows, labels = fake_split("cifar10", "test")
    order = np.random.default_rng(0).permutation(len(rows))
    return parquet("cifar10", [rows[i] for i in order], labels[order]), "labels are not in the official order"


def _wrong_row_count() -> tuple[bytes, str]:
    rows, labels = fake_split("cifar10", "test")
    return parquet("cifar10", rows[:-1], labels[:-1]), "has 9,999 rows, but the official split has 10,000"


def _truncated() -> tuple[bytes, str]:
    data = good_cifar10_test()
    return data[:len(data) // 2], "is not a readable Parquet file"


@pytest.mark.parametrize("make", [_altered_pixel, _shuffled, _wrong_row_count, _truncated])
def test_a_wrong_copy_is_refused_and_deleted_and_the_samples_are_used(site, tmp_path, capsys, make):
    data, message = make()
    path = site.hub("cifar10", "test", data)
    _falls_back_to_samples(tmp_path)
    err = capsys.readouterr().err
    assert message in err and "The downloaded file was deleted" in err
    assert "Trying the official download" in err and "HTTP 404" in err
    assert _leftovers(tmp_path) == [] and len(site.asked(path)) == 1


def test_a_cifar100_copy_in_another_order_is_refused_by_its_labels_or_pixels(site, tmp_path, capsys):
    rows, labels = fake_split("cifar100", "test")
    rows[0], rows[1], labels[0], labels[1] = rows[1], rows[0], labels[1], labels[0]
    site.hub("cifar100", "test", parquet("cifar100", rows, labels))
    with pytest.raises(DataUnavailableError, match="labels are not in the official order: row 0"):
        load_dataset("cifar100", "test", root=tmp_path, source="mirror")
    rows[0], rows[1], labels[0], labels[1] = rows[1], rows[0], labels[1], labels[0]
    twin = next(j for j in range(1, 916) if labels[j] == labels[0])      # same label: only the pixels can tell
    rows[0], rows[twin] = rows[twin], rows[0]
    site.hub("cifar100", "test", parquet("cifar100", rows, labels))
    with pytest.raises(DataUnavailableError, match="image 0 differs from the committed sample"):
        load_dataset("cifar100", "test", root=tmp_path, source="mirror")
    rows[0], rows[twin] = rows[twin], rows[0]
    site.hub("cifar100", "test", parquet("cifar100", rows, labels))
    data = load_dataset("cifar100", "test", root=tmp_path, source="mirror")
    assert "pixel-identical to the 916 committed images" in data.source and (data.class_counts() == 100).all()


def test_a_404_moves_on_to_the_next_source(site, tmp_path, capsys):
    _falls_back_to_samples(tmp_path)
    err = capsys.readouterr().err
    assert "CIFAR-10 test: the Hugging Face Hub copy uoft-cs/cifar10 was not used." in err
    assert f"{site.url}/datasets/uoft-cs/cifar10/resolve/main/plain_text/test-00000-of-00001.parquet: the server " \
           "answered HTTP 404" in err
    assert "the archive from the mirror 127.0.0.1" in err and "No other source to download from" in err
    with pytest.raises(DataUnavailableError, match="(?s)could not be downloaded.*HTTP 404.*source='samples'"):
        load_dataset("cifar10", "test", root=tmp_path, source="mirror")


def test_a_stalled_transfer_is_given_up(site, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "LIMITS", download.Limits(timeout_s=0.5, min_rate=0))
    site.hub("cifar10", "test", good_cifar10_test(), stall_after=300_000)
    start = time.perf_counter()
    _falls_back_to_samples(tmp_path)
    assert time.perf_counter() - start < 10
    assert "the transfer stalled: no data for 0.5 s after 0.3 MB" in capsys.readouterr().err
    assert _leftovers(tmp_path) == ["uoft-cs--cifar10--test-00000-of-00001.parquet.part"]   # kept to resume


def test_a_too_slow_source_is_given_up_loudly(site, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "LIMITS", download.Limits(timeout_s=5, min_rate=1e6, window_s=0.5))
    site.hub("cifar10", "test", good_cifar10_test(), rate=100_000)
    start = time.perf_counter()
    _falls_back_to_samples(tmp_path)
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert re.search(r"\*\*\* CIFAR-10 test from the Hugging Face Hub copy uoft-cs/cifar10: http://\S+ delivered "
                     r"only \d+ kB/s over the last [\d.]+ s, below the minimum of 1 MB/s: giving up on this "
                     r"source", err)
    assert "cifar10-test.json" not in _leftovers(tmp_path)


def test_decoding_the_hubs_pngs_shows_progress(site, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "TEXT_EVERY_S", 0.0)
    site.hub("cifar10", "test", good_cifar10_test())
    load_dataset("cifar10", "test", root=tmp_path)
    out = capsys.readouterr().out
    what = "decoding uoft-cs/cifar10/plain_text/test-00000-of-00001.parquet"
    assert re.search(rf"{what}: 5,000 of 10,000 images, \d+ s left", out)
    assert re.search(rf"{what}: 10,000 images in [\d.]+ s", out)


def test_a_source_that_failed_is_not_asked_again_in_the_process(site, tmp_path, monkeypatch, capsys):
    """The Hub cannot be reached (nothing more is asked of it), the archives answer 404 (each file is asked once):
    four loads say four failures, not ten, and naming a source asks it again."""
    monkeypatch.setitem(mirrors.BASE_URLS, "hub", f"http://127.0.0.1:{closed_port()}")
    with pytest.warns(OfflineSamplesWarning):
        for name in ("cifar10", "cifar100"):
            for split in ("test", "train"):
                load_dataset(name, split, root=tmp_path)
    err = capsys.readouterr().err
    assert err.count("was not used") == 4 and err.count("the Hugging Face Hub copy") == 1
    assert "cannot connect" in err and "Nothing more is asked of 127.0.0.1:" in err
    assert len(site.asked("/ray/cifar-10-python.tar.gz")) == 1
    assert len(site.asked("/official/cifar-10-python.tar.gz")) == 1
    assert len(site.asked("/official/cifar-100-python.tar.gz")) == 1
    with pytest.raises(DataUnavailableError, match="cannot connect.*HTTP 404"):
        load_dataset("cifar10", "test", root=tmp_path, source="mirror")
    assert len(site.asked("/ray/cifar-10-python.tar.gz")) == 2


# ---------------------------------------------------------------------------------------------------------------
# Resume, and a cache that is damaged

@pytest.mark.parametrize("ignore_range", [False, True])
def test_an_interrupted_download_resumes_from_the_part_file(site, tmp_path, capsys, ignore_range):
    path = site.hub("cifar10", "test", good_cifar10_test(), cdn=True, cut_after=1_000_000, ignore_range=ignore_range)
    with pytest.raises(DataUnavailableError, match=r"the connection closed after 1\.0 MB of .* resumes it"):
        load_dataset("cifar10", "test", root=tmp_path, source="mirror")
    part = tmp_path / "downloads" / "uoft-cs--cifar10--test-00000-of-00001.parquet.part"
    assert part.stat().st_size == 1_000_000
    data = load_dataset("cifar10", "test", root=tmp_path, source="mirror")
    assert "verified" in data.source and site.asked(path) == [None, "bytes=1000000-"]
    out = capsys.readouterr().out
    assert ("ignored the request to resume" in out) == ignore_range and ("resuming at 1.0 MB" in out) != ignore_range
    assert not part.exists()


def test_two_processes_loading_the_same_split_download_it_once(site, tmp_path):
    """The second loader waits on the first one's download (a lock per split), then reads its verified cache."""
    from concurrent.futures import ThreadPoolExecutor

    path = site.hub("cifar10", "test", good_cifar10_test(), rate=2_000_000)   # slow enough to overlap
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: load_dataset("cifar10", "test", root=tmp_path), range(2))
    assert len(site.asked(path)) == 1 and torch.equal(a.images, b.images)
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("damage", ["flip a byte", "cut short", "no sidecar"])
def test_a_damaged_cache_is_reported_deleted_and_rebuilt(site, tmp_path, capsys, damage):
    path = site.hub("cifar10", "test", good_cifar10_test())
    first = load_dataset("cifar10", "test", root=tmp_path)
    files = cache.paths(tmp_path, "cifar10", "test")
    raw = bytearray(files["images"].read_bytes())
    if damage == "flip a byte":
        raw[len(raw) // 2] ^= 0xFF
        files["images"].write_bytes(bytes(raw))
    elif damage == "cut short":
        files["images"].write_bytes(bytes(raw[:-100]))
    else:
        files["sidecar"].unlink()
    capsys.readouterr()
    again = load_dataset("cifar10", "test", root=tmp_path)
    assert "damaged or incomplete" in capsys.readouterr().err
    assert len(site.asked(path)) == 2 and torch.equal(again.images, first.images)
    assert cache.load("cifar10", "test", tmp_path) is not None                   # rebuilt, and valid


# ---------------------------------------------------------------------------------------------------------------
# SVHN: the label convention, and a test split without committed test images (small fake splits)

@pytest.fixture
def small_svhn(monkeypatch):
    """SVHN with 1,100 training and 300 test images, whose class counts are those of the fake splits below."""
    monkeypatch.setitem(DATASETS, "svhn", replace(DATASETS["svhn"], sizes={"train": 1100, "test": 300}))
    rows, train = fake_split("svhn", "train", 1100)
    monkeypatch.setitem(mirrors.SVHN_CLASS_COUNTS, "train", tuple(np.bincount(train, minlength=10)))
    monkeypatch.setitem(mirrors.SVHN_CLASS_COUNTS, "test", (30,) * 10)
    return rows, train


def test_svhn_digit_zero_must_be_label_zero(site, tmp_path, small_svhn):
    rows, labels = small_svhn
    site.hub("svhn", "train", parquet("svhn", rows, np.where(labels == 0, 10, labels)))   # the .mat's: 0 is 10
    with pytest.raises(DataUnavailableError, match="labels run from 1 to 10.*digit 0 is label 0"):
        load_dataset("svhn", "train", root=tmp_path, source="mirror")
    site.hub("svhn", "train", parquet("svhn", rows, labels))
    data = load_dataset("svhn", "train", root=tmp_path, source="mirror")
    assert "pixel-identical to the 883 committed images" in data.source


def test_svhn_gets_a_real_test_split_checked_without_test_samples(site, tmp_path, small_svhn):
    rows, labels = [FILLERS[i % 8] for i in range(300)], np.arange(300) % 10
    rows[17] = _sample_pngs("svhn", "train")[1][5]                         # a training image in the test split
    site.hub("svhn", "test", parquet("svhn", rows, labels))
    train_index = int(load_samples("svhn", "train").indices[5])
    with pytest.raises(DataUnavailableError, match=f"image 17 is committed train image {train_index}"):
        load_dataset("svhn", "test", root=tmp_path, source="mirror")
    rows[17] = FILLERS[0]
    site.hub("svhn", "test", parquet("svhn", rows, labels))
    data = load_dataset("svhn", "test", root=tmp_path, source="mirror")
    assert "300 images, the official class counts, none of the 883 committed train images" in data.source
    assert "STAND-IN" not in data.source


def test_an_svhn_test_copy_sorted_by_class_is_refused(site, tmp_path, small_svhn):
    """No SVHN test images or labels are committed, so its order cannot be checked image by image; a copy grouped
    by class (right size and counts) is still refused."""
    labels = np.repeat(np.arange(10), 30)
    site.hub("svhn", "test", parquet("svhn", [FILLERS[i % 8] for i in range(300)], labels))
    with pytest.raises(DataUnavailableError, match="97% of neighbouring images share a label.*grouped or sorted"):
        load_dataset("svhn", "test", root=tmp_path, source="mirror")


# ---------------------------------------------------------------------------------------------------------------
# A byte-identical archive mirror: trusted by the official md5 only, then read by torchvision

def _cifar10_archive() -> tuple[bytes, dict[str, str]]:
    """A cifar-10-python.tar.gz in torchvision's layout (test_batch: the committed test samples; 10 images in each
    training batch) and the md5 of each file in it."""
    test = load_samples("cifar10", "test")
    files = {"batches.meta": pickle.dumps({"label_names": test.class_names})}
    for name, data in [(f"data_batch_{b}", test.select(torch.arange(10))) for b in range(1, 6)] + \
                      [("test_batch", test)]:
        files[name] = pickle.dumps({"data": data.images.reshape(len(data), -1).numpy(),
                                    "labels": data.labels.tolist()})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue(), {name: hashlib.md5(raw).hexdigest() for name, raw in files.items()}


def test_an_archive_mirror_is_used_only_with_the_official_md5(site, tmp_path, monkeypatch, capsys):
    archive, md5s = _cifar10_archive()
    site.files["/ray/cifar-10-python.tar.gz"] = archive
    _falls_back_to_samples(tmp_path)                       # torchvision's real md5: this archive is not official
    err = capsys.readouterr().err
    assert "it is not the official file. Deleted; this source is not used." in err
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()

    # Pretend this archive is the official one: its md5 (and its files') are torchvision's expected values. (The
    # refused URL is remembered for the process, so forget it, as a new session would.)
    download.forget_failures()
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{b}", md5s[f"data_batch_{b}"]] for b in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5s["test_batch"]]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5s["batches.meta"]})
    data = load_dataset("cifar10", "test", root=tmp_path)
    assert "official CIFAR-10 via torchvision" in data.source and "archive from the mirror 127.0.0.1" in data.source
    assert torch.equal(data.images, load_samples("cifar10", "test").images)


def test_fetch_checks_the_checksum_and_names_the_url(site, tmp_path):
    site.files["/file.bin"] = b"x" * 1000
    url = f"{site.url}/file.bin"
    with pytest.raises(download.DownloadError, match=f"{url}: the downloaded file's sha256 is .* not the official"):
        download.fetch(url, tmp_path / "file.bin", "a file", checksum=("sha256", "0" * 64))
    assert list(tmp_path.iterdir()) == []
    good = hashlib.sha256(b"x" * 1000).hexdigest()
    assert download.fetch(url, tmp_path / "file.bin", "a file", checksum=("sha256", good)).read_bytes() == b"x" * 1000
