"""One epoch of CIFAR-10 with the course's GPU-resident loader vs torchvision's DataLoader with 2 workers.

Both produce the same thing: shuffled batches of 128 (``--batch``), random crop with 4-pixel zero padding and
horizontal flip, normalised, on the device. torchvision does it the classic way (PIL image per sample,
``RandomCrop``/``RandomHorizontalFlip``/``ToTensor``/``Normalize`` in 2 worker processes, Colab's CPU count, pinned
memory and a non-blocking copy on a GPU); ``course_lib.data.GPULoader`` keeps the uint8 set on the device and
augments whole batches there.

Data: the whole CIFAR-10 training set when ``--data-root`` holds it (torchvision files or the JPEG copy under
``cifar10-jpeg/``), else the 2,000 committed sample images repeated to 10,000. ``--train`` adds a ViT-Lite training
step per batch (bf16 on a GPU), so the epoch time includes the model.

    .venv/bin/python benchmarks/bench_loader.py                       # CPU, committed samples
    .venv/bin/python benchmarks/bench_loader.py --device cuda --data-root data --train --out loader.json
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import device_name, report

from course_lib.data import DATASETS, GPULoader, ImageSet, load_dataset


class PILDataset(torch.utils.data.Dataset):
    """The uint8 images as PIL images through torchvision transforms, one sample at a time."""

    def __init__(self, data: ImageSet):
        import torchvision.transforms as T

        self.images = data.images.permute(0, 2, 3, 1).numpy()
        self.labels = data.labels.numpy()
        info = DATASETS[data.dataset]
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(info.mean, info.std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def load(data_root: str | None) -> ImageSet:
    if data_root:
        data = load_dataset("cifar10", "train", root=data_root, download=False)
        if "committed" not in data.source:
            return data
    data = load_dataset("cifar10", "train", source="samples")
    repeat = torch.arange(len(data)).repeat(5)
    return data.select(repeat, "committed samples repeated 5x")


def epoch_time(batches, step, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    n = 0
    for x, y in batches():
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        step(x, y)
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per loader (after one warm-up)")
    parser.add_argument("--train", action="store_true", help="include a ViT-Lite training step per batch")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load(args.data_root)

    step = lambda x, y: None  # noqa: E731 - pure data loading
    if args.train:
        from course_lib.models import vit_lite

        model = vit_lite().to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None

        def step(x, y):
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    ours = GPULoader(data, args.batch, device, train=True, drop_last=False)
    theirs = torch.utils.data.DataLoader(PILDataset(data), batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.workers > 0)

    def ours_batches():
        ours.set_epoch(ours.epoch + 1)
        return iter(ours)

    loaders = {"course_lib GPULoader": ours_batches,
               f"torchvision DataLoader ({args.workers} workers)": lambda: iter(theirs)}
    times = {name: [] for name in loaders}
    for name, batches in loaders.items():
        epoch_time(batches, step, device)                       # warm-up epoch (workers start, caches fill)
    for _ in range(args.epochs):
        for name, batches in loaders.items():
            times[name].append(epoch_time(batches, step, device))
    result = {
        "device": device_name(device), "data": f"{len(data):,} images: {data.source}", "batch": args.batch,
        "with_training_step": args.train,
        "epoch_seconds_median": {name: statistics.median(t) for name, t in times.items()},
        "images_per_s": {name: len(data) / statistics.median(t) for name, t in times.items()},
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
