"""How close to this CPU's limit does the study train? For each model's training step (forward, backward, AdamW
step; batch 64, float32, as the study runs it), the images per second and the achieved GFLOP/s, beside the
same machine's float32 matmul rate on the same number of threads (the most a dense kernel gets here).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward+backward pass (matmuls and
convolutions, 2 FLOPs per multiply-add; element-wise work is not counted, so the achieved rate is a lower
bound). The study runs one training per core with one thread each, so ``--threads 1`` is its setting.

    taskset -c 1 python benchmarks/bench_cpu_limit.py --threads 1 --out benchmarks/results/cpu-limit.json
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common import device_name, report  # noqa: E402  (puts the project on sys.path)

from course_lib.drloc import DRLocLoss  # noqa: E402
from course_lib.models import create_model  # noqa: E402


def matmul_gflops(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5) -> float:
    """The best rate of float32 (n x n) @ (n x n) products over ``sizes`` (best of ``repeats`` each), in GFLOP/s."""
    rates = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        rates.append(2 * n ** 3 / min(_timed(lambda: a @ b) for _ in range(repeats)) / 1e9)
    return max(rates)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _step(model, extra, optimizer, x, y) -> None:
    tokens = model.forward_blocks(x)          # before the final norm, where DRLoc reads them
    loss = F.cross_entropy(model.forward_head(model.norm(tokens)), y)
    if extra is not None:
        loss = loss + 0.5 * extra(model, tokens, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(name: str, batch: int, steps: int) -> dict:
    drloc = name == "vit+drloc"
    model = create_model("vit" if drloc else name, num_classes=10).train()
    extra = DRLocLoss(dim=model.grid_dim) if drloc else None
    channels_last = getattr(model, "prefers_channels_last", False)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    params = list(model.parameters()) + (list(extra.parameters()) if extra is not None else [])
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    with FlopCounterMode(display=False) as counter:       # one forward + backward, counted
        tokens = model.forward_blocks(x)          # before the final norm, where DRLoc reads them
        loss = F.cross_entropy(model.forward_head(model.norm(tokens)), y)
        if extra is not None:
            loss = loss + 0.5 * extra(model, tokens, x, y)
        loss.backward()
    flops = counter.get_total_flops()
    _step(model, extra, optimizer, x, y)                   # warm-up
    seconds = min(_timed(lambda: _step(model, extra, optimizer, x, y)) for _ in range(steps))
    return {"model": name, "batch": batch, "step_seconds": seconds, "images_per_second": batch / seconds,
            "gflop_per_step": flops / 1e9, "achieved_gflops": flops / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (the fastest is kept)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_gflops()
    rows = [measure(name, args.batch, args.steps) for name in ("vit", "vit+drloc", "resnet18")]
    for row in rows:
        row["fraction_of_matmul"] = row["achieved_gflops"] / peak
        print(f"{row['model']:>10}: {row['images_per_second']:6.1f} img/s, {row['gflop_per_step']:6.1f} GFLOP per "
              f"step, {row['achieved_gflops']:6.1f} GFLOP/s = {100 * row['fraction_of_matmul']:.0f} % of the "
              f"{peak:.1f} GFLOP/s fp32 matmul", flush=True)
    report({"device": device_name(torch.device("cpu")), "threads": args.threads, "matmul_gflops": peak,
            "models": rows}, args.out)


if __name__ == "__main__":
    main()
