"""Loading CIFAR-10 from the verified Hub copy (cold and cached) vs reading torchvision's pickles, and what a
student on Colab waits for and sees.

Data: the 60,000 CIFAR-10 images of the JPEG copy (``--jpeg``, decoded with ``load_cifar10_jpeg``), written

- as the Hugging Face Hub copy ``uoft-cs/cifar10`` is: one Parquet file per split, PNG bytes in an ``img`` struct
  column and a ``label`` column, the training rows in the Hub's file order (``data_batch_4, 3, 2, 5, 1``), served
  by a local HTTP server standing in for the Hub (``--rate`` MB/s, 0 = as fast as it goes);
- as torchvision's ``cifar-10-batches-py`` (five training pickles, a test pickle, ``batches.meta``), read with
  ``torchvision.datasets.CIFAR10`` (which checks each file's md5 first; here against these files' md5).

The JPEG pixels are lossy, so they fail the check against the committed exact samples; by default the committed
sample pixels are written at their official indices (``--no-exact-samples`` keeps the JPEG pixels and shows the
copy being refused). Everything else about the check runs as on the real copy.

Measured: cold load (download + PNG decode + verify + cache), cached load (median of 3), torchvision's pickles;
then "notebook 01's data cell on a simulated Colab": ``COURSE_OFFLINE`` unset, the server throttled to 30 MB/s,
``load_dataset`` for CIFAR-10 train and test from an empty data folder, with the text the student sees.

    .venv/bin/python benchmarks/bench_data_sources.py --out benchmarks/results/cpu-data-sources.json
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import pickle
import platform
import shutil
import statistics
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch

from course_lib.data import (DataUnavailableError, download, load_cifar10_jpeg, load_dataset, load_samples, mirrors,
                             sources)

JPEG = "/work/shared/data/cifar10-jpeg/cifar10_yoongikim_jpg.tar.xz"
HUB_BATCH_ORDER = (4, 3, 2, 5, 1)        # the order of the training batches in the Hub's Parquet file


def splits(jpeg: str, exact: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 (N, 32, 32, 3), int64 (N,))} in the official order, committed pixels written in if ``exact``."""
    out = {}
    for split in ("train", "test"):
        data = load_cifar10_jpeg(jpeg, split)
        images = data.images.permute(0, 2, 3, 1).numpy().copy()
        if exact:
            sample = load_samples("cifar10", split)
            images[sample.indices.numpy()] = sample.images.permute(0, 2, 3, 1).numpy()
        out[split] = images, data.labels.numpy()
    return out


def write_hub_parquet(images: np.ndarray, labels: np.ndarray, path: Path, hub_order: bool) -> None:
    """The split as the Hub's Parquet file (PNG bytes in an ``img`` struct, ``label``), in the Hub's row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rows = np.arange(len(labels))
    if hub_order:
        rows = np.concatenate([np.arange((b - 1) * 10000, b * 10000) for b in HUB_BATCH_ORDER])
    png = []
    for i in rows:
        buffer = io.BytesIO()
        Image.fromarray(images[i]).save(buffer, "PNG")
        png.append({"bytes": buffer.getvalue(), "path": None})
    table = pa.table({"img": pa.array(png, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array(labels[rows].astype(np.int64))})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_torchvision(data: dict, folder: Path) -> dict[str, str]:
    """``folder/cifar-10-batches-py`` in torchvision's format; returns {file name: md5}."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{b}": ("train", slice((b - 1) * 10000, b * 10000)) for b in range(1, 6)}
    batches["test_batch"] = ("test", slice(None))
    for name, (split, rows) in batches.items():
        images, labels = data[split]
        flat = images[rows].transpose(0, 3, 1, 2).reshape(-1, 3072)
        (base / name).write_bytes(pickle.dumps({"data": flat, "labels": labels[rows].tolist()}))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": sources.CIFAR10_CLASSES}))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in base.iterdir()}


class Throttled(SimpleHTTPRequestHandler):
    """Serves a folder; ``rate`` bytes/s (0: unthrottled)."""

    rate = 0.0

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        start, sent = time.monotonic(), 0
        while block := source.read(1 << 18):
            outputfile.write(block)
            sent += len(block)
            if self.rate:
                time.sleep(max(0.0, sent / self.rate - (time.monotonic() - start)))


@contextlib.contextmanager
def hub_server(folder: Path, rate_mb: float):
    """A local server for ``folder``; the mirrors' and torchvision's URLs point at it (so nothing leaves here)."""
    import torchvision.datasets as tvd

    handler = type("Handler", (Throttled,), {"rate": rate_mb * 1e6})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    saved = dict(mirrors.BASE_URLS), tvd.CIFAR10.url
    mirrors.BASE_URLS.update(hub=url, **{"ray-s3": url})
    tvd.CIFAR10.url = f"{url}/official/cifar-10-python.tar.gz"
    try:
        yield url
    finally:
        mirrors.BASE_URLS.update(saved[0])
        tvd.CIFAR10.url = saved[1]
        server.shutdown()
        server.server_close()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_mirror(folder: Path, work: Path) -> dict:
    """Cold (download + decode + verify + cache) and cached loads of CIFAR-10 train from the local Hub."""
    root = work / "root-mirror"
    shutil.rmtree(root, ignore_errors=True)
    with hub_server(folder, 0):
        start = time.perf_counter()
        try:
            cold = load_dataset("cifar10", "train", root=root, source="mirror")
        except DataUnavailableError as error:
            return {"refused_after_s": time.perf_counter() - start, "error": str(error)}
        cold_s = time.perf_counter() - start
    cached = [timed(lambda: load_dataset("cifar10", "train", root=root))[1] for _ in range(3)]
    again = load_dataset("cifar10", "train", root=root)
    assert torch.equal(again.images, cold.images) and again.source == cold.source
    return {"cold_s": cold_s, "cached_s_median": statistics.median(cached), "cached_s": cached,
            "source": cold.source, "cache_bytes": sum(p.stat().st_size for p in (root / "course_cache").iterdir())}


def bench_torchvision(folder: Path, md5: dict[str, str]) -> dict:
    """``torchvision.datasets.CIFAR10`` on the same images (md5 checks included), and as an NCHW uint8 tensor."""
    import torchvision.datasets as tvd

    class Same(tvd.CIFAR10):                 # torchvision's reader; the md5s it checks are these files'
        train_list = [[f"data_batch_{b}", md5[f"data_batch_{b}"]] for b in range(1, 6)]
        test_list = [["test_batch", md5["test_batch"]]]
        meta = {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]}

    runs = []
    for _ in range(3):
        ds, seconds = timed(lambda: Same(str(folder), train=True, download=False))
        _, to_tensor = timed(lambda: torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous())
        runs.append((seconds, seconds + to_tensor))
    return {"constructor_s_median": statistics.median(r[0] for r in runs),
            "with_nchw_tensor_s_median": statistics.median(r[1] for r in runs)}


def simulate_colab(folder: Path, work: Path, rate_mb: float) -> dict:
    """Notebook 01's data loading on a fresh Colab: online, empty data folder, the Hub at ``rate_mb`` MB/s."""
    root = work / "root-colab"
    shutil.rmtree(root, ignore_errors=True)
    os.environ.pop("COURSE_OFFLINE", None)
    os.environ["COURSE_PLAIN_PROGRESS"] = "1"            # text lines: what the notebook's progress bar shows
    download.TEXT_EVERY_S = 1.0
    transcript = io.StringIO()
    with hub_server(folder, rate_mb), contextlib.redirect_stdout(transcript), \
            contextlib.redirect_stderr(transcript):
        start = time.perf_counter()
        for split in ("train", "test"):
            print(load_dataset("cifar10", split, root=root).describe())
        seconds = time.perf_counter() - start
    return {"rate_MB_s": rate_mb, "wall_s": seconds, "transcript": transcript.getvalue()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jpeg", default=JPEG)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "bench-data-sources"))
    parser.add_argument("--no-exact-samples", action="store_true", help="keep the JPEG pixels (the copy is refused)")
    parser.add_argument("--colab-rate", type=float, default=30.0, help="MB/s of the simulated Hub")
    parser.add_argument("--out")
    args = parser.parse_args()
    work = Path(args.work)
    hub = work / "hub"
    data, build_s = timed(lambda: splits(args.jpeg, not args.no_exact_samples))
    files = {s: hub / f"datasets/uoft-cs/cifar10/resolve/main/{mirrors.HUB_COPIES['cifar10'].files[s]}"
             for s in ("train", "test")}
    for split, path in files.items():
        write_hub_parquet(*data[split], path, hub_order=split == "train")
    md5 = write_torchvision(data, work / "torchvision")
    result = {"device": f"CPU {platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
              "data": f"CIFAR-10 from {Path(args.jpeg).name}, committed sample pixels written in: "
                      f"{not args.no_exact_samples}", "prepare_s": build_s,
              "parquet_MB": {s: path.stat().st_size / 1e6 for s, path in files.items()},
              "mirror_train": bench_mirror(hub, work),
              "torchvision_train": bench_torchvision(work / "torchvision", md5),
              "colab": simulate_colab(hub, work, args.colab_rate)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
