"""CIFAR-10, CIFAR-100 and SVHN as uint8 tensors, from wherever they can be found, plus a GPU-resident loader.

Where the images come from (``load_dataset(..., source="auto")`` tries them in this order):

1. ``torchvision``: the official files under ``root`` (torchvision's own layout), downloaded when missing and the
   network is there. This is what a student on Colab gets.
2. ``jpeg`` (CIFAR-10 only): a JPEG copy laid out as ``<split>/<class>/<k>.jpg`` (the k-th image of that class in
   the official order), as a folder or a ``.tar.xz`` under ``root/cifar10-jpeg/``. Lossy (JPEG quality 75, about
   30 dB PSNR), so accuracies on it run a little below the published ones.
3. ``samples``: small real samples with exact pixels that ship inside ``course_lib`` (2,000 CIFAR-10 training
   images, 1,117 CIFAR-100, 883 SVHN, and test samples). Used offline, loudly: a warning says so every time.

Every :class:`ImageSet` records in ``source`` which copy it came from; results and figures quote it.

Tensor conventions: images are ``uint8`` (N, 3, 32, 32) until the loader normalises them on the device into
``float32`` (B, 3, 32, 32); labels are ``int64`` (N,).
"""
from __future__ import annotations

import io
import os
import socket
import tarfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DatasetInfo", "DATASETS", "ImageSet", "DataUnavailableError", "OfflineSamplesWarning", "load_dataset",
           "load_cifar10_jpeg", "subset", "take", "normalize", "denormalize", "GPULoader", "default_data_root"]

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a data set: number of classes, per-channel mean/std (of the training split, in [0, 1] units),
    whether a horizontal flip is a valid augmentation (not for digits), and the official split sizes."""

    name: str
    title: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hflip: bool
    sizes: dict = field(default_factory=dict)


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                           {"train": 50000, "test": 10000}),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                            {"train": 50000, "test": 10000}),
    # Flipping a digit makes another symbol (2 <-> S-like shapes), so SVHN is not flipped.
    "svhn": DatasetInfo("svhn", "SVHN", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False,
                        {"train": 73257, "test": 26032}),
}


class DataUnavailableError(RuntimeError):
    """The requested copy of a data set is not on disk and cannot be downloaded."""


class OfflineSamplesWarning(UserWarning):
    """The full data set was not available, so the small committed samples are used instead."""


_format_warning = warnings.formatwarning


def _format_offline_warning(message, category, filename, lineno, line=None):
    # Shown in notebooks and in the book: the message is the point, not the file and line that raised it.
    if isinstance(category, type) and issubclass(category, OfflineSamplesWarning):
        return f"{category.__name__}: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _format_offline_warning


@dataclass
class ImageSet:
    """A labelled set of images held as tensors.

    Attributes:
        images: uint8 (N, 3, H, W).
        labels: int64 (N,).
        dataset: key in :data:`DATASETS` ("cifar10", "cifar100", "svhn").
        split: "train" or "test".
        class_names: one name per class.
        source: which copy of the data this is, in words (quoted in results).
        indices: int64 (N,) positions in the official split when known, else None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    split: str
    class_names: list[str]
    source: str
    indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"ImageSet.images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}.")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> torch.Tensor:
        """Images per class, (num_classes,)."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def select(self, index: torch.Tensor, note: str = "") -> "ImageSet":
        """The images at ``index`` (a 1-D index tensor), with ``note`` appended to ``source``."""
        return replace(self, images=self.images[index], labels=self.labels[index],
                       indices=None if self.indices is None else self.indices[index],
                       source=self.source + (f"; {note}" if note else ""))

    def describe(self) -> str:
        return f"{self.info.title} {self.split}: {len(self):,} images ({self.source})"


# --------------------------------------------------------------------------------------------------------------
# Finding the data

def default_data_root() -> Path:
    """``$COURSE_DATA_ROOT`` if set, else ``./data``."""
    return Path(os.environ.get("COURSE_DATA_ROOT", "data"))


def _check_name(name: str, split: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}. Choose one of {sorted(DATASETS)}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    return DATASETS[name]


def _from_torchvision(name: str, split: str, root: Path, download: bool) -> ImageSet:
    import torchvision.datasets as tvd

    train = split == "train"
    if name == "svhn":
        ds = tvd.SVHN(str(root), split=split, download=download)
        images, labels, classes = torch.from_numpy(ds.data), torch.as_tensor(ds.labels), [str(i) for i in range(10)]
    else:
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        ds = cls(str(root), train=train, download=download)
        images, labels, classes = torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets), ds.classes
    return ImageSet(images.contiguous(), labels.long(), name, split, list(classes),
                    f"official {DATASETS[name].title} via torchvision ({root})", torch.arange(len(labels)))


def _find_jpeg_copy(root: Path) -> Path | None:
    """A CIFAR-10 JPEG copy under ``root/cifar10-jpeg`` (a folder with train/ and test/, or a .tar.xz), if any."""
    base = root / "cifar10-jpeg"
    if (base / "train").is_dir():
        return base
    archives = sorted(base.glob("*.tar.xz")) if base.is_dir() else []
    return archives[0] if archives else None


def load_cifar10_jpeg(path: str | Path, split: str = "train") -> ImageSet:
    """Load the CIFAR-10 JPEG copy (``<split>/<class>/<k>.jpg``, folder or .tar.xz) in the official order.

    ``<split>/<class>/<k>.jpg`` is the k-th image of that class in the official split, so with the official labels
    (shipped in ``samples/cifar10_all_labels.npz``) every image goes back to its official index.
    """
    from PIL import Image

    path = Path(path)
    info = _check_name("cifar10", split)
    class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    official = np.load(SAMPLES_DIR / "cifar10_all_labels.npz")[split]
    files: dict[tuple[int, int], bytes] = {}
    if path.is_dir():
        for c, cname in enumerate(class_names):
            for f in (path / split / cname).glob("*.jpg"):
                files[c, int(f.stem)] = f.read_bytes()
    else:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.strip("./").split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == split and parts[1] in class_names:
                    files[class_names.index(parts[1]), int(Path(parts[2]).stem)] = tar.extractfile(member).read()
    if len(files) != info.sizes[split]:
        raise DataUnavailableError(f"The CIFAR-10 JPEG copy at {path} has {len(files)} {split} images, expected "
                                   f"{info.sizes[split]}. Unpack the whole archive again.")
    images = np.empty((len(official), 32, 32, 3), np.uint8)
    for c in range(10):
        positions = np.flatnonzero(official == c)          # official indices of class c, in order
        for k, pos in enumerate(positions):
            images[pos] = np.asarray(Image.open(io.BytesIO(files[c, k])).convert("RGB"))
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(official).long(),
                    "cifar10", split, class_names, f"CIFAR-10 JPEG copy, quality 75 ({path.name})",
                    torch.arange(len(official)))


def _from_samples(name: str, split: str) -> ImageSet:
    shards = sorted(SAMPLES_DIR.glob(f"{name}_{split}_*.npz"))
    if not shards:
        raise DataUnavailableError(f"No committed samples for {name} {split} in {SAMPLES_DIR}; the package is "
                                   "incomplete. Reinstall course_lib from the repository.")
    parts = [np.load(s) for s in shards]
    images = torch.from_numpy(np.concatenate([p["images"] for p in parts])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.concatenate([p["labels"] for p in parts])).long()
    indices = torch.from_numpy(np.concatenate([p["indices"] for p in parts])).long()
    info = DATASETS[name]
    note = f"committed real samples, exact pixels: {len(labels):,} of the {info.sizes[split]:,} official {split} images"
    if name == "svhn" and split == "test":
        note += " (no SVHN test images were obtainable: this stand-in test set is 200 official *train* images, " \
                "disjoint from the committed train sample)"
    return ImageSet(images, labels, name, split, [str(c) for c in parts[0]["class_names"]], note, indices)


_WARNED: set[tuple[str, str, str]] = set()


def _offline() -> bool:
    return os.environ.get("COURSE_OFFLINE", "0").lower() not in ("", "0", "false", "no")


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, source: str = "auto",
                 download: bool = True) -> ImageSet:
    """Load a data set split as an :class:`ImageSet`.

    Args:
        name: "cifar10", "cifar100" or "svhn".
        split: "train" or "test".
        root: folder with torchvision's files (and optionally ``cifar10-jpeg/``); default ``$COURSE_DATA_ROOT``
            or ``./data``.
        source: "auto" (see the module docstring), or one of "torchvision", "jpeg", "samples" to insist on it.
        download: let torchvision download a missing data set (never when ``COURSE_OFFLINE=1``).

    Raises:
        DataUnavailableError: the requested source is missing; the message says how to get it.
    """
    info = _check_name(name, split)
    root = Path(root) if root is not None else default_data_root()
    if source not in ("auto", "torchvision", "jpeg", "samples"):
        raise ValueError(f"source must be 'auto', 'torchvision', 'jpeg' or 'samples', not {source!r}.")
    if source == "samples":
        return _from_samples(name, split)
    if source == "jpeg":
        jpeg = _find_jpeg_copy(root) if name == "cifar10" else None
        if jpeg is None:
            raise DataUnavailableError(f"No CIFAR-10 JPEG copy under {root / 'cifar10-jpeg'} (only CIFAR-10 has one)."
                                       " Put the .tar.xz or its unpacked train/ and test/ folders there.")
        return load_cifar10_jpeg(jpeg, split)

    try:  # 1. torchvision files already on disk
        return _from_torchvision(name, split, root, download=False)
    except RuntimeError:
        pass
    if source == "auto" and name == "cifar10" and (jpeg := _find_jpeg_copy(root)) is not None:
        return load_cifar10_jpeg(jpeg, split)                               # 2. the JPEG copy
    reason = "COURSE_OFFLINE is set" if _offline() else "download=False"
    if download and not _offline():
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)    # a dead network should fail in seconds, not hang the notebook
        try:
            return _from_torchvision(name, split, root, download=True)      # 3. download
        except Exception as error:  # noqa: BLE001 - any network or archive failure means "not available"
            reason = f"download failed: {type(error).__name__}: {error}"
        finally:
            socket.setdefaulttimeout(previous)
    if source == "torchvision":
        raise DataUnavailableError(
            f"{info.title} ({split}) is not in {root} and could not be downloaded ({reason}). Fix: connect to the "
            f"internet and call load_dataset({name!r}, download=True); or copy torchvision's files into {root}; or "
            f"use source='samples' for the small real samples that ship with course_lib.")
    sample = _from_samples(name, split)                                      # 4. committed samples, loudly
    if (name, split, reason) in _WARNED:       # once per process and split: loud, not a wall of repeats
        return sample
    _WARNED.add((name, split, reason))
    warnings.warn(f"\n*** {info.title} {split} is not available ({reason}). Using the SMALL committed sample "
                  f"instead: {len(sample):,} images. Accuracies are not comparable with full-data results. To get "
                  f"the full set, run with internet access (e.g. on Colab) or put torchvision's files in {root}. ***",
                  OfflineSamplesWarning, stacklevel=2)
    return sample


# --------------------------------------------------------------------------------------------------------------
# Small-data subsets

def subset(data: ImageSet, n_per_class: int, seed: int = 0, allow_fewer: bool = False) -> ImageSet:
    """A stratified, deterministic subset: ``n_per_class`` images of every class.

    The images of each class are shuffled with ``seed`` and the first ``n_per_class`` kept, so for one seed the
    subsets are nested: ``subset(d, 50)`` is contained in ``subset(d, 100)``. The result keeps the original order.

    Args:
        allow_fewer: take all images of a class that has fewer than ``n_per_class`` instead of raising.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}.")
    counts = data.class_counts()
    if not allow_fewer and int(counts.min()) < n_per_class:
        short = int(counts.argmin())
        raise ValueError(f"subset asks for {n_per_class} images per class, but class {data.class_names[short]!r} "
                         f"has only {int(counts[short])} in this copy of {data.info.title} {data.split} "
                         f"({data.source}). Ask for at most {int(counts.min())}, pass allow_fewer=True, or load the "
                         "full data set.")
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        keep.append(members[torch.randperm(len(members), generator=generator)[:n_per_class]])
    index = torch.cat(keep).sort().values
    return data.select(index, f"subset of {n_per_class} per class (seed {seed})")


def take(data: ImageSet, n: int | None, seed: int = 0) -> ImageSet:
    """``n`` images chosen at random with ``seed`` (all of them if ``n`` is None or too large), in original order."""
    if n is None or n >= len(data):
        return data
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data.select(index, f"{n} images (seed {seed})")


# --------------------------------------------------------------------------------------------------------------
# Normalisation and the GPU-resident loader

def normalize(images: torch.Tensor, dataset: str, enabled: bool = True) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32, scaled to [0, 1] and standardised with the data set's mean/std."""
    x = images.float().div_(255)
    if enabled:
        info = DATASETS[dataset]
        mean = torch.tensor(info.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(info.std, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
    return x


def denormalize(x: torch.Tensor, dataset: str, enabled: bool = True) -> torch.Tensor:
    """The inverse of :func:`normalize`: float (B, 3, H, W) -> values in [0, 1] for display."""
    if enabled:
        info = DATASETS[dataset]
        x = x * torch.tensor(info.std, device=x.device).view(1, 3, 1, 1) + \
            torch.tensor(info.mean, device=x.device).view(1, 3, 1, 1)
    return x.clamp(0, 1)


def random_crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Batched random crop (zero padding ``pad``) and horizontal flip in one gather.

    Args:
        images: (B, C, H, W), any dtype.
        shifts: (B, 2) integer offsets in [0, 2*pad] for rows and columns of the padded image.
        flips: (B,) bool, mirror those images left-right.
    Returns:
        (B, C, H, W): ``out[b] = flip?(pad(images[b])[:, dy:dy+H, dx:dx+W])``.
    """
    B, C, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    ar_h = torch.arange(H, device=images.device)
    ar_w = torch.arange(W, device=images.device)
    rows = shifts[:, :1] + ar_h                                            # (B, H)
    cols = shifts[:, 1:] + torch.where(flips[:, None], ar_w.flip(0), ar_w)  # (B, W), reversed when flipped
    b = torch.arange(B, device=images.device).view(B, 1, 1, 1)
    c = torch.arange(C, device=images.device).view(1, C, 1, 1)
    return padded[b, c, rows.view(B, 1, H, 1), cols.view(B, 1, 1, W)]


class GPULoader:
    """Batches of an :class:`ImageSet` with the whole data set resident on ``device``.

    The uint8 images are copied to the device once; every batch is gathered, augmented (random crop with zero
    padding and horizontal flip, done in one batched gather) and normalised there. No worker processes, no PIL, no
    host-to-device copy per batch: on a GPU this removes the input pipeline as a bottleneck, and on a CPU it is
    still faster than per-image PIL transforms.

    Randomness comes from a CPU generator seeded with ``seed + epoch`` (call :meth:`set_epoch`), so an epoch is
    reproducible on any device and after a resume.

    Yields:
        (images float32 (B, 3, H, W), labels int64 (B,)) on ``device``.
    """

    def __init__(self, data: ImageSet, batch_size: int, device: str | torch.device = "cpu", train: bool = False,
                 augment: bool | None = None, hflip: bool | None = None, pad: int = 4, normalize: bool = True,
                 drop_last: bool | None = None, seed: int = 0, channels_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if len(data) == 0:
            raise ValueError("Cannot build a loader over an empty ImageSet.")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.dataset, self.batch_size, self.train = data.dataset, batch_size, train
        self.augment = train if augment is None else augment
        self.hflip = data.info.hflip if hflip is None else hflip
        self.pad, self.normalize, self.seed, self.channels_last = pad, normalize, seed, channels_last
        # Drop a ragged last training batch only when there are several batches (tiny sets keep everything).
        self.drop_last = (train and len(data) > 2 * batch_size) if drop_last is None else drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.train else torch.arange(n)
        shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        order, shifts, flips = order.to(self.device), shifts.to(self.device), flips.to(self.device) & self.hflip
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = random_crop_flip(x, shifts[idx], flips[idx], self.pad)
            x = normalize(x, self.dataset, self.normalize)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
