"""The CKA matrix between two ResNet-18s: course_lib.cka.cka_matrix against torch_cka 0.21, side by side.

Both compute unbiased linear minibatch CKA (Nguyen et al. 2021) between the 22 layers of each model: stem + 4 stages
and the 17 convolutions (nested: a stage fires after the convolutions inside it), over 1,000 real CIFAR-10 images
(``take(load_dataset("cifar10", "train", source="samples"), 1000)``, standardised) in batches of 100, on the CPU,
forward passes included. The models are random-init ResNet-18s (seeds 0 and 1); ``--pair same`` compares one of them
with itself (notebook 04's "ResNet ↔ ResNet"), where ``cka_matrix`` runs the model once per batch and computes the
symmetric matrix, while torch_cka runs it twice.

- course_lib: ``cka_matrix(model_a, model_b, images, layers, layers, batch_size=100)``.
- torch_cka: ``CKA(model_a, model_b, model1_layers=..., model2_layers=..., device="cpu").compare(loader)``, a
  ``DataLoader`` over the same standardised images. torch_cka never removes its hooks, so it gets its own copies of
  the models. Its ``compare`` runs the models with gradients on; by default the benchmark wraps it in
  ``torch.no_grad()`` so that both sides pay the same forward passes (``--torch-cka-grad``: as its README calls it).

The runs alternate (ours, torch_cka, ours, ...); each side's fastest run is reported, in wall-clock and in CPU
seconds (the process's CPU time, which the other load of a shared machine barely changes at one thread: run with
``--threads 1`` there), with the time of the forward passes alone (both models, no hooks) for reference: for two
distinct models no CKA implementation can take less. It also prints the largest
difference between the two matrices (torch_cka sums in float32, course_lib in float64).

Install the peer into the venv (a benchmark peer only, not a course dependency), then run from the repository root:

    .venv/bin/pip install torch_cka==0.21
    .venv/bin/python benchmarks/bench_cka_vs_torch_cka.py --out benchmarks/results/cpu-cka-vs-torch-cka.json

Goal: torch_cka's time / ours >= 5.
"""
from __future__ import annotations

import copy
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from common import cka_arguments, cka_images, device_name, report

from course_lib.cka import cka_matrix
from course_lib.hooks import resnet_layers
from course_lib.models import resnet18_cifar


def layer_names(model: torch.nn.Module) -> list[str]:
    """The 22 nested layers, in the order they fire (a stage after the convolutions inside it)."""
    names = set({**resnet_layers(model, "stages"), **resnet_layers(model, "convs")})
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: order.append(n)) for n, m in model.named_modules() if n in names]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    return order


class Clock:
    """Wall-clock and CPU seconds of a block (the CPU time of this process, which other load on a shared machine
    barely changes at one thread)."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_ours(model_a, model_b, images, names, batch_size) -> tuple[Clock, torch.Tensor]:
    with Clock() as clock:
        matrix = cka_matrix(model_a, model_b, images, names, names, batch_size=batch_size)
    return clock, matrix


def run_torch_cka(model_a, model_b, images, names, batch_size, grad: bool) -> tuple[Clock, torch.Tensor]:
    from torch_cka import CKA

    a = copy.deepcopy(model_a)
    b = a if model_b is model_a else copy.deepcopy(model_b)
    loader = DataLoader(TensorDataset(images), batch_size=batch_size, shuffle=False)
    with Clock() as clock, warnings.catch_warnings(), torch.set_grad_enabled(grad):
        warnings.simplefilter("ignore")
        cka = CKA(a, b, "ResNet-18 A", "ResNet-18 B", model1_layers=names, model2_layers=names, device="cpu")
        cka.compare(loader)
    # torch_cka's rows and columns follow the order the hooks fired in: the same order as ``names``.
    assert list(cka.model1_features) == names and list(cka.model2_features) == names
    return clock, cka.export()["CKA"].double()


def forward_only(model_a, model_b, images, batch_size) -> Clock:
    """One pass of both models over the images, no hooks: the floor for two distinct models."""
    with Clock() as clock, torch.no_grad():
        for s in range(0, len(images), batch_size):
            model_a(images[s:s + batch_size])
            model_b(images[s:s + batch_size])
    return clock


def main() -> None:
    parser = cka_arguments(__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating (default 2)")
    parser.add_argument("--pair", choices=["distinct", "same", "both"], default="both")
    parser.add_argument("--torch-cka-grad", action="store_true", help="run torch_cka with gradients on, as its "
                        "README calls it (default: under torch.no_grad(), the same forward passes as ours)")
    args = parser.parse_args()
    data, preprocess = cka_images(args)
    images = preprocess(data.images)
    torch.manual_seed(0)
    model_a = resnet18_cifar().eval()
    torch.manual_seed(1)
    other = resnet18_cifar().eval()
    names = layer_names(model_a)
    print(f"{data.describe()}\nResNet-18: {len(names)} x {len(names)} layers; batch {args.batch_size}; "
          f"{torch.get_num_threads()} threads; {args.repeats} alternating runs per side", flush=True)

    results = {}
    for pair in (["distinct", "same"] if args.pair == "both" else [args.pair]):
        model_b = other if pair == "distinct" else model_a
        forward = forward_only(model_a, other, images, args.batch_size)     # both models once: what torch_cka runs
        ours, theirs = [], []
        for _ in range(args.repeats):
            clock, matrix = run_ours(model_a, model_b, images, names, args.batch_size)
            ours.append(clock)
            print(f"  {pair}: course_lib {clock.wall:7.2f} s wall, {clock.cpu:7.2f} s CPU", flush=True)
            clock, reference = run_torch_cka(model_a, model_b, images, names, args.batch_size, args.torch_cka_grad)
            theirs.append(clock)
            print(f"  {pair}: torch_cka  {clock.wall:7.2f} s wall, {clock.cpu:7.2f} s CPU", flush=True)
        diff = (matrix - reference).abs().max().item()
        result = {"max_abs_difference": diff}
        for kind in ("wall", "cpu"):
            a, b = min(getattr(c, kind) for c in ours), min(getattr(c, kind) for c in theirs)
            result[kind] = {"course_lib": a, "torch_cka": b, "forward_only": getattr(forward, kind), "ratio": b / a,
                            "runs": {"course_lib": [getattr(c, kind) for c in ours],
                                     "torch_cka": [getattr(c, kind) for c in theirs]}}
            print(f"{pair}, {kind} seconds: forward passes alone {getattr(forward, kind):.2f}; course_lib {a:.2f}, "
                  f"torch_cka {b:.2f}: ratio {b / a:.2f}x", flush=True)
        print(f"{pair}: max |difference| between the matrices {diff:.1e}", flush=True)
        results[pair] = result
    report({"device": device_name("cpu"), "images": len(images), "batch": args.batch_size, "layers": len(names),
            "torch_cka": "0.21", "torch_cka_grad": args.torch_cka_grad, "threads": torch.get_num_threads(),
            "results": results}, args.out)


if __name__ == "__main__":
    main()
