"""Training throughput of the course's ViT next to timm's VisionTransformer with the same configuration.

Forward + backward (+ an AdamW step) on random 32x32 images, both models built with patch 4, dim 192, depth 9,
12 heads, MLP ratio 2, qkv bias, class token: the same parameter count, checked before timing. The two models are
timed alternately (ours, timm, ours, ...) so that drift in the machine's speed hits both; the median is reported.

On the CPU: float32, batch 128. On a CUDA GPU: bfloat16 autocast (float16 where bf16 is missing), batch 512.

timm is *not* a course dependency. Run it with timm on the path only for this benchmark::

    pip install --target /tmp/bench-deps --no-deps timm==1.0.31
    PYTHONPATH=/tmp/bench-deps .venv/bin/python benchmarks/bench_vit_vs_timm.py [--device cuda] [--out result.json]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import device_name, report

from course_lib.models import ViT, count_parameters

CONFIG = dict(img_size=32, patch_size=4, num_classes=10, dim=192, depth=9, heads=12, mlp_ratio=2.0)


def build_timm():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=4, num_classes=10, embed_dim=192, depth=9, num_heads=12,
                             mlp_ratio=2.0, qkv_bias=True, class_token=True, global_pool="token")


def make_step(model, device, dtype):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype != torch.float32 else \
        (lambda: torch.autocast(device.type, enabled=False))

    def step(x, y):
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def time_steps(step, x, y, n, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds")
    parser.add_argument("--steps", type=int, default=None, help="steps per round")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (512 if gpu else 128)
    steps = args.steps or (20 if gpu else 2)
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if gpu else torch.float32
    torch.manual_seed(0)
    models = {"course_lib ViT": ViT(**CONFIG), "timm VisionTransformer": build_timm()}
    counts = {name: count_parameters(m) for name, m in models.items()}
    assert len(set(counts.values())) == 1, f"the two configurations differ: {counts}"
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    steps_fn = {}
    for name, model in models.items():
        model.to(device).train()
        steps_fn[name] = make_step(model, device, dtype)
        for _ in range(2 if not gpu else 10):                    # warm-up: allocator, kernels, caches
            steps_fn[name](x, y)
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            times[name].append(time_steps(steps_fn[name], x, y, steps, device))
    result = {
        "device": device_name(device), "dtype": str(dtype).replace("torch.", ""), "batch": batch,
        "parameters": counts["course_lib ViT"],
        "images_per_s": {name: batch / statistics.median(t) for name, t in times.items()},
        "step_ms_median": {name: 1000 * statistics.median(t) for name, t in times.items()},
    }
    ours, theirs = result["images_per_s"].values()
    result["ours_vs_timm"] = ours / theirs
    report(result, args.out)


if __name__ == "__main__":
    main()
