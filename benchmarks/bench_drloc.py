"""What does the DRLoc term add to a training step? CPU benchmark, float32.

One step = forward (features + classifier), cross-entropy (+ 0.5 * DRLoc), backward, AdamW step, on a batch of
random 32x32 images, with and without the DRLoc term at the paper's m = 32 pairs per image. The two variants run
alternately, after a warm-up, so that a machine shared with other processes slows both alike; the median of the
repetitions is reported, in wall-clock time and in CPU time of the process (the work done, which waiting for
a core shared with other processes does not inflate), with the cost of the DRLoc term alone (sampling, gather,
head, loss, and their backward).

Run from the repository root:

    .venv/bin/python benchmarks/bench_drloc.py                      # ViT-Lite and the hybrid, batch 128
    .venv/bin/python benchmarks/bench_drloc.py --models vit --reps 9 --batch 64 --threads 2

Goal: the DRLoc term costs at most 10 % of a ViT-Lite step.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common import device_name, report

from course_lib.drloc import DRLocLoss
from course_lib.models import hybrid_vit, vit_lite

MODELS = {"vit": (vit_lite, lambda m: m.dim), "hybrid": (hybrid_vit, lambda m: 2 * m.dim)}


def make_step(model: nn.Module, term: DRLocLoss | None, x: torch.Tensor, y: torch.Tensor):
    """A closure running one training step like fit's (without its scheduler and gradient clipping)."""
    params = list(model.parameters()) + ([] if term is None else list(term.parameters()))
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        tokens = model.forward_blocks(x)          # before the final norm, where DRLoc reads them
        loss = F.cross_entropy(model.forward_head(model.norm(tokens)), y, label_smoothing=0.1)
        if term is not None:
            loss = loss + term.drloc_weight * term(model, tokens, x, y)
        loss.backward()
        optimizer.step()

    return step


def counted_flops(model: nn.Module, term: DRLocLoss | None, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + backward, as torch's FlopCounterMode counts them (matmuls and convolutions; it does
    not see inside the CPU's fused attention kernel, so a ViT's attention products are left out)."""
    with FlopCounterMode(display=False) as counter:
        tokens = model.forward_blocks(x)          # before the final norm, where DRLoc reads them
        loss = F.cross_entropy(model.forward_head(model.norm(tokens)), y)
        if term is not None:
            loss = loss + term.drloc_weight * term(model, tokens, x, y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    if term is not None:
        term.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def timed(fn) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process over all its threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_model(name: str, batch: int, m: int, reps: int, warmup: int) -> dict:
    factory, grid_dim = MODELS[name]
    torch.manual_seed(0)
    base = factory().train()
    with_drloc = copy.deepcopy(base)
    term = DRLocLoss(dim=grid_dim(base), m=m)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    steps = {"without": make_step(base, None, x, y), "with": make_step(with_drloc, term, x, y)}

    # The DRLoc term alone, on a fixed grid: sampling + gather + head + L1, and their backward.
    grid = base.forward_grid(x).detach().requires_grad_(True)

    def term_only() -> None:
        term.zero_grad(set_to_none=True)
        grid.grad = None
        term.grid_loss(grid).backward()

    for _ in range(warmup):
        steps["without"](), steps["with"](), term_only()
    wall: dict[str, list[float]] = {"without": [], "with": [], "term": []}
    cpu: dict[str, list[float]] = {"without": [], "with": [], "term": []}
    for rep in range(reps):   # alternate the order so that slow spells of a shared machine hit both
        for key in (("without", "with") if rep % 2 == 0 else ("with", "without")) + ("term",):
            w, c = timed(steps[key] if key != "term" else term_only)
            wall[key].append(w)
            cpu[key].append(c)

    k = grid.shape[-1]
    n_params = sum(p.numel() for p in base.parameters()) / 1e6
    head_params = sum(p.numel() for p in term.parameters()) / 1e6
    print(f"{name}: {n_params:.2f} M params, grid {grid.shape[1]}x{k}x{k}, DRLoc head {head_params:.2f} M params, "
          f"batch {batch}, m={m} ({batch * m} pairs)")
    for key, label in (("without", "step without DRLoc"), ("with", "step with DRLoc"),
                       ("term", "DRLoc term alone (fwd+bwd)")):
        print(f"  {label:<28} wall median {1e3 * statistics.median(wall[key]):7.1f} ms (min {1e3 * min(wall[key]):.1f})"
              f"   CPU median {1e3 * statistics.median(cpu[key]):7.1f} ms")
    flops = {key: counted_flops(with_drloc, term if key == "with" else None, x, y) for key in ("without", "with")}
    print(f"  FLOPs (fwd+bwd, counted): {flops['without'] / 1e9:.1f} G without, {flops['with'] / 1e9:.1f} G with "
          f"DRLoc: {100 * (flops['with'] / flops['without'] - 1):+.1f} %")
    # CPU time counts the work done, not the time spent waiting for cores: steadier on a machine shared with others.
    for label, t in (("wall", wall), ("CPU ", cpu)):
        med = {key: statistics.median(v) for key, v in t.items()}
        print(f"  overhead ({label}): step with / without {100 * (med['with'] / med['without'] - 1):+5.1f} %,"
              f"  term alone / step without {100 * med['term'] / med['without']:5.1f} %")
    return {"batch": batch, "m": m, "wall_ms_median": {k: 1e3 * statistics.median(v) for k, v in wall.items()},
            "cpu_ms_median": {k: 1e3 * statistics.median(v) for k, v in cpu.items()},
            "flops_overhead_percent": 100 * (flops["with"] / flops["without"] - 1)}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit", "hybrid"], choices=sorted(MODELS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--m", type=int, default=64, help="pairs per image (the official runs: 64)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, float32, "
          f"{args.reps} repetitions after {args.warmup} warm-up steps (medians)")
    results = {name: bench_model(name, args.batch, args.m, args.reps, args.warmup) for name in args.models}
    report({"device": device_name("cpu"), "models": results}, args.out)


if __name__ == "__main__":
    main()
