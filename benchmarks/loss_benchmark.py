"""Benchmark: the loss's plain definition vs its fused fast path (and the official-style computation).

Methods (``--methods``, default all three):

* ``official-style``: the official ZegCLIP loss's computation written out (per-image Python loops
  over the present classes, a float one-hot target);
* ``plain``: ``zegclip.model.loss.focal_dice`` (``FocalDiceLoss(implementation="plain")``), the
  definition with ordinary torch ops, what the golden tests compare with;
* ``fused``: ``zegclip.model.loss_fused.fused_focal_dice`` (``FocalDiceLoss()``, the default that
  training runs).

Prints a Markdown table with, per device and method, the forward+backward time (median of
``--repeats`` runs after one warm-up) and the peak extra memory of one forward+backward, then the
largest differences between each method's losses and gradients and those of ``plain``.

    python benchmarks/loss_benchmark.py                      # COCO-like: B=2, C=156, 512x512
    python benchmarks/loss_benchmark.py --logit-size 32      # the grid logits training passes
    python benchmarks/loss_benchmark.py --size 256 --repeats 3 --devices cpu
    python benchmarks/loss_benchmark.py --methods plain,fused

The table is also written to ``benchmarks/results/loss_benchmark_cpu.md`` (``_grid`` with
``--logit-size`` below ``--size``; ``--out`` for another file).

Memory: the peak beyond the inputs (the logits leaf and labels exist before; the logits' ``.grad``,
as large as the logits, is part of the figure). On CUDA, ``torch.cuda.max_memory_allocated`` minus
what was allocated before the call. On CPU, each method runs in a fresh subprocess and the figure is
the growth of the resident set's high-water mark (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
over the first forward+backward, relative to the resident set just before it: it includes allocator
overhead and is an estimate. Both methods see the same inputs (seeded), so their losses and
gradients are compared exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import benchlib

IGNORE = 255


# ----------------------------------------------------------------------------- the two methods


def official_style_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """The computation as the official ZegCLIP loss does it (docs/method.md §2), written out plainly.

    Per image, a Python loop over the classes present builds their binary masks; a full-size float
    one-hot target ``(B, C, H, W)`` is filled from them; the focal loss runs
    ``F.binary_cross_entropy_with_logits`` with all its full-size temporaries; dice runs on the
    gathered masks of the present classes. Returns (weighted loss_mask, loss_dice).
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    b, c = logits.shape[:2]
    classes, masks = [], []
    for i in range(b):  # target preparation, one image at a time
        present = labels[i].unique()
        present = present[present != IGNORE]
        classes.append(present)
        masks.append(torch.stack([labels[i] == k for k in present]) if len(present) else None)
    num_masks = max(sum(len(p) for p in classes), 1)

    target = torch.zeros(logits.shape, dtype=logits.dtype, device=logits.device)
    for i in range(b):
        if masks[i] is not None:
            target[i, classes[i]] = masks[i].to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    focal = ce * ((1 - p_t) ** gamma)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    focal = alpha_t * focal
    loss_mask = focal.flatten(2).mean(-1).sum() / num_masks

    src = torch.cat([logits[i, classes[i]] for i in range(b) if masks[i] is not None]).flatten(1)
    tgt = torch.cat([m for m in masks if m is not None]).flatten(1).to(logits.dtype)
    p = src.sigmoid()
    dice = 1 - (2 * (p * tgt).sum(-1) + 1) / (p.sum(-1) + tgt.sum(-1) + 1)
    loss_dice = dice.sum() / num_masks
    return 100 * loss_mask, loss_dice


def plain(logits: torch.Tensor, labels: torch.Tensor):
    from zegclip.model.loss import FocalDiceLoss

    out = FocalDiceLoss(ignore_index=IGNORE, implementation="plain")(
        logits, labels
    )  # the labels' ignore value
    return out.loss_mask, out.loss_dice


def fused(logits: torch.Tensor, labels: torch.Tensor):
    from zegclip.model.loss import FocalDiceLoss

    out = FocalDiceLoss(ignore_index=IGNORE)(logits, labels)  # the default: implementation="fused"
    return out.loss_mask, out.loss_dice


METHODS = {"official-style": official_style_loss, "plain": plain, "fused": fused}
REFERENCE = "plain"
"""The method the others' losses and gradients are compared with."""


# ----------------------------------------------------------------------------- inputs


def make_inputs(
    batch: int, classes: int, size: int, logit_size: int, per_image: int, device: str, seed: int = 0
):
    """Seeded logits and COCO-like label maps: ``per_image`` classes in blobs, ~10% ignore pixels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, logit_size, logit_size, generator=g).mul_(3)
    labels = torch.empty(batch, size, size, dtype=torch.long)
    for i in range(batch):
        chosen = torch.randperm(classes, generator=g)[:per_image]
        coarse = chosen[torch.randint(0, len(chosen), (1, 1, 12, 12), generator=g)].float()
        labels[i] = F.interpolate(coarse, size=(size, size), mode="nearest")[0, 0].long()
    labels[torch.rand(batch, size, size, generator=g) < 0.05] = IGNORE
    labels[:, :, -size // 20 :] = IGNORE  # a padded border
    return logits.to(device), labels.to(device)


# ----------------------------------------------------------------------------- one measurement


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(method: str, args: argparse.Namespace, device: str, save_to: str | None) -> dict:
    fn = METHODS[method]
    logits, labels = make_inputs(args.batch, args.classes, args.size, args.logit_size, args.per_image, device)

    def leaf() -> torch.Tensor:
        return logits.detach().clone().requires_grad_(True)

    def step(x: torch.Tensor):
        loss_mask, loss_dice = fn(x, labels)
        (loss_mask + loss_dice).backward()
        return x, loss_mask.detach(), loss_dice.detach()

    # warm-up on a small input (kernels, lazy initialisation) without touching the big one
    small = make_inputs(1, 4, 16, 16, 2, device, seed=1)
    fn(small[0].clone().requires_grad_(True), small[1])[0].backward()

    if device.startswith("cuda"):
        x = leaf()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        x, loss_mask, loss_dice = step(x)
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - before
        memory_note = "torch.cuda.max_memory_allocated"
    else:
        x = leaf()
        before = _rss_bytes()
        high_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        x, loss_mask, loss_dice = step(x)
        high_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        # the high-water mark only moves if this step's peak exceeds every earlier one
        peak = high_after - before if high_after > high_before else -1
        memory_note = "ru_maxrss growth"
    grad = x.grad.detach().cpu()
    del x  # (freed before the timed runs)

    times = []
    for _ in range(args.repeats):
        x = leaf()
        _sync(device)
        start = time.perf_counter()
        step(x)
        _sync(device)
        times.append(time.perf_counter() - start)

    if save_to:
        torch.save({"loss_mask": loss_mask.cpu(), "loss_dice": loss_dice.cpu(), "grad": grad}, save_to)
    return {
        "method": method,
        "device": device,
        "time_s": statistics.median(times),
        "times": times,
        "peak_bytes": peak,
        "memory_note": memory_note,
        "loss_mask": float(loss_mask),
        "loss_dice": float(loss_dice),
    }


# ----------------------------------------------------------------------------- driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=156, help="training text set (COCO-Stuff seen: 156)")
    parser.add_argument("--size", type=int, default=512, help="label size (crop)")
    parser.add_argument(
        "--logit-size", type=int, default=None, help="logit size (default: --size, as in training)"
    )
    parser.add_argument("--per-image", type=int, default=8, help="classes present per image")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, from {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument(
        "--devices", default=None, help="comma-separated (default: cpu, plus cuda if available)"
    )
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/loss_benchmark_cpu[_grid].md)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save-to", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.logit_size = args.logit_size or args.size
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    return args


def run_in_subprocess(method: str, device: str, args: argparse.Namespace, save_to: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--device",
        device,
        "--save-to",
        save_to,
        "--batch",
        str(args.batch),
        "--classes",
        str(args.classes),
        "--size",
        str(args.size),
        "--logit-size",
        str(args.logit_size),
        "--per-image",
        str(args.per_image),
        "--repeats",
        str(args.repeats),
        "--methods",
        method,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{method} on {device} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt_bytes(n: int) -> str:
    return "not above the earlier high-water mark" if n < 0 else f"{n / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.set_threads()
    if args.worker:
        print(json.dumps(measure(args.worker, args, args.device, args.save_to)))
        return 0

    devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    lines = [benchlib.header(f"python benchmarks/{command}")]
    lines.append(
        f"B={args.batch}, C={args.classes}, labels {args.size}x{args.size}, "
        f"logits {args.logit_size}x{args.logit_size}, {args.per_image} classes per image, "
        f"float32 (logits {fmt_bytes(4 * args.batch * args.classes * args.logit_size**2)}); "
        f"time: median of {args.repeats} forward+backward runs after a warm-up; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads\n"
    )
    rows, diffs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            results = {}
            for method in args.methods:
                path = str(Path(tmp) / f"{device}_{len(results)}.pt")
                rows.append(run_in_subprocess(method, device, args, path))
                results[method] = torch.load(path, weights_only=True)
            ref_name = REFERENCE if REFERENCE in results else args.methods[0]
            ref = results[ref_name]
            scale = ref["grad"].abs().max().item()
            for method, other in results.items():
                if method != ref_name:
                    diffs.append(
                        (
                            device,
                            f"{method} vs {ref_name}",
                            abs(other["loss_mask"] - ref["loss_mask"]).item(),
                            abs(other["loss_dice"] - ref["loss_dice"]).item(),
                            (other["grad"] - ref["grad"]).abs().max().item(),
                            scale,
                        )
                    )

    lines.append(
        "| device | method | fwd+bwd time, median (min) | peak extra memory | memory measured by "
        "| loss_mask | loss_dice |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['method']} | {r['time_s'] * 1000:,.0f} ms ({min(r['times']) * 1000:,.0f}) "
            f"| {fmt_bytes(r['peak_bytes'])} "
            f"| {r['memory_note']} | {r['loss_mask']:.6f} | {r['loss_dice']:.6f} |"
        )
    lines.append("")
    lines.append(
        "| device | methods | max abs diff loss_mask | max abs diff loss_dice | max abs diff grad "
        "| max abs grad |"
    )
    lines.append("|---|---|---|---|---|---|")
    for device, pair, dm, dd, dg, scale in diffs:
        lines.append(f"| {device} | {pair} | {dm:.3g} | {dd:.3g} | {dg:.3g} | {scale:.3g} |")
    lines += ["", f"Load average at the end: {benchlib.load_average()}."]
    name = "loss_benchmark_cpu" + ("_grid" if args.logit_size < args.size else "")
    benchlib.write_result(name, "\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
