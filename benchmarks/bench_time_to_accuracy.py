"""Wall time to reach a CIFAR-10 test accuracy: 93 % for ResNet-18, 85 % for the ViT, with the course's recipe.

Each model trains with ``course_lib.train.fit`` (AdamW, warm-up + cosine over the epoch budget, label smoothing,
mixed precision, the GPU-resident loader), evaluating on the whole test set after every epoch, and stops at the
first epoch whose test accuracy reaches the target. The time reported is the wall time up to that epoch, evaluation
included. If the target is not reached within the budget, the best accuracy and the total time are reported.

Anchors from elsewhere (not run here): kuangliu/pytorch-cifar's ResNet-18 reaches about 95 % after 200 SGD epochs;
airbench reaches 94 % in a few seconds on an A100 with a custom small network and tricks; ViT-from-scratch
repositories report about 90 % on CIFAR-10 after 200 epochs with heavy augmentation.

Needs the full CIFAR-10 training set (torchvision files or the JPEG copy under ``<data-root>/cifar10-jpeg/``) and a
GPU; on a CPU it would take days::

    python benchmarks/bench_time_to_accuracy.py --data-root data --out tta.json
"""
from __future__ import annotations

import argparse
import time

import torch

from common import report

from course_lib.data import load_dataset
from course_lib.experiments import environment_summary
from course_lib.models import create_model
from course_lib.runtime import seed_everything
from course_lib.recipes import RECIPES
from course_lib.train import fit

TARGETS = {"resnet18": (93.0, 40), "vit": (85.0, 150)}     # model: (target %, epoch budget of the schedule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--models", default="resnet18,vit")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    train = load_dataset("cifar10", "train", root=args.data_root, download=False)
    test = load_dataset("cifar10", "test", root=args.data_root, download=False)
    if "committed" in train.source:
        raise SystemExit("The full CIFAR-10 is needed: put torchvision's files or the JPEG copy under --data-root.")
    results = {"environment": environment_summary(), "train_source": train.source, "runs": {}}
    for name in args.models.split(","):
        target, epochs = TARGETS[name]
        seed_everything(0)
        model = create_model(name, num_classes=10)
        start = time.perf_counter()
        history = fit(model, train, test, RECIPES["course"], epochs=epochs, batch_size=args.batch,
                      on_epoch_end=lambda h: (h.test_acc[-1] or 0.0) >= target)
        reached = history.test_acc[-1] >= target
        results["runs"][name] = {
            "target": target, "epoch_budget": epochs, "reached": reached, "epochs_run": len(history),
            "seconds": sum(history.seconds), "wall_seconds": time.perf_counter() - start,
            "best_test_acc": max(a for a in history.test_acc if a is not None), "history": history.to_dict()}
        print(f"{name}: {'reached' if reached else 'did not reach'} {target}% after {len(history)} epochs, "
              f"{sum(history.seconds):.0f} s (best {results['runs'][name]['best_test_acc']:.2f}%)", flush=True)
    report(results, args.out)


if __name__ == "__main__":
    main()
