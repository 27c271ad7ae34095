"""Training and evaluation speed and memory on a CUDA GPU.

    python benchmarks/gpu_benchmark.py [--batch 4] [--repeats 10] [--scales voc coco]
        [--modes fp32 bf16-mixed compile compile+bf16-mixed] [--out FILE]
    python benchmarks/gpu_benchmark.py --smoke      # on CPU with a tiny model: checks the script

Per scale (VOC: 10 prompt tokens, 15 seen classes; COCO-Stuff: 100 tokens, 156 seen classes)
and mode (fp32; ``bf16-mixed``, i.e. bf16 autocast as ``trainer.precision=bf16-mixed``;
``compile``, i.e. ``torch.compile`` of the model's forward as ``compile=true``; and both), one
training step is: forward of ``--batch`` random 512x512 crops, focal + dice loss, backward,
AdamW step. Reported: step time (median over ``--repeats`` after warm-up, which includes
compilation), images/s, peak memory (``torch.cuda.max_memory_allocated`` over one step,
weights included). Evaluation: a VOC-sized image (500x375 resized to 683x512, sliding windows
512/426: 2 windows), scores resized back and argmax, in fp32 and bf16 autocast, images/s.
Random ViT-B/16 weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import benchlib

SCALES = {"voc": (10, 20, 5), "coco": (100, 171, 15)}  # prompt tokens, classes, unseen
MODES = ("fp32", "bf16-mixed", "compile", "compile+bf16-mixed")
TINY_ARCH = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 3, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


def build(prompts: int, smoke: bool, device: str):
    from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig

    torch.manual_seed(0)
    if smoke:
        config = ZegCLIPConfig(
            clip=CLIPConfig(arch=TINY_ARCH), image_size=64, prompt_tokens=3, decoder_heads=4
        )
    else:
        config = ZegCLIPConfig(clip=CLIPConfig(model_name="ViT-B-16"), image_size=512, prompt_tokens=prompts)
    return ZegCLIP(config).to(device)


def autocast(device: str, bf16: bool):
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def train_row(model: Any, classes: int, unseen: int, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from zegclip.common.constants import IGNORE_INDEX
    from zegclip.model.loss import FocalDiceLoss

    device, size = args.device, model.config.image_size
    seen = classes - unseen
    text = model.class_embeddings([f"class {i}" for i in range(classes)])[:seen].to(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, seen, (args.batch, size, size), generator=gen).to(device)
    labels[:, :, -size // 20 :] = IGNORE_INDEX
    model.train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=2e-5)
    forward = torch.compile(model.forward) if mode.startswith("compile") else model.forward
    criterion, bf16 = FocalDiceLoss(), mode.endswith("bf16-mixed")

    def step() -> None:
        with autocast(device, bf16):
            out = forward(images, text)
            loss = criterion(out.logits_for(labels.shape[-2:]), labels)
        loss.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(3 if mode.startswith("compile") else 1):
        step()
    benchlib.sync(device)
    warmup = time.perf_counter() - start
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    step()
    benchlib.sync(device)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    times = benchlib.timed(step, repeats=args.repeats, warmup=0, device=device)
    return {"times": times, "peak": peak, "warmup": warmup}


def eval_rows(model: Any, classes: int, args: argparse.Namespace) -> dict[str, list[float]]:
    device = args.device
    model.eval()
    text = model.class_embeddings([f"class {i}" for i in range(classes)]).to(device)
    size = model.config.image_size
    h, w = (375, 500) if size == 512 else (47, 62)
    resized = torch.randn(1, 3, size, size * w // h).to(device)
    out = {}
    for precision in ("fp32", "bf16"):

        def evaluate(bf16: bool = precision == "bf16") -> torch.Tensor:
            with torch.no_grad(), autocast(device, bf16):
                scores = model.segment(resized, text_embeddings=text, mode="slide", stride=size * 5 // 6)
            return F.interpolate(scores.float(), size=(h, w), mode="bilinear", align_corners=False).argmax(1)

        out[precision] = benchlib.timed(evaluate, repeats=args.repeats, warmup=2, device=device)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="crops per step (official: 4 per GPU)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, 1 repeat: checks the script")
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/gpu_benchmark.md)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.repeats, args.batch = "cpu", 1, 2
    elif not (args.device.startswith("cuda") and torch.cuda.is_available()):
        print("gpu_benchmark.py needs a CUDA GPU (use --smoke to check the script on a CPU)", file=sys.stderr)
        return 2
    command = "python benchmarks/" + " ".join(
        [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    )
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else "CPU (smoke run: measures nothing)"
    )
    lines = [benchlib.header(command, f"Device: {device_name}; batch {args.batch} crops per step.")]
    lines += [
        "| workload | mode | step time, median (min) | images/s | peak memory | warm-up |",
        "|---|---|---|---|---|---|",
    ]
    eval_lines = [
        "",
        "| evaluation | precision | time per image, median (min) | images/s |",
        "|---|---|---|---|",
    ]
    for scale in args.scales:
        prompts, classes, unseen = SCALES[scale]
        model = build(prompts, args.smoke, args.device)
        for mode in args.modes:
            r = train_row(model, classes, unseen, mode, args)
            med = statistics.median(r["times"])
            peak = benchlib.gib(r["peak"]) if r["peak"] is not None else "-"
            lines.append(
                f"| {scale} | {mode} | {benchlib.fmt_time(r['times'])} | {args.batch / med:.1f} | {peak} | "
                f"{r['warmup']:.1f} s |"
            )
        if scale == "voc":
            for precision, times in eval_rows(model, classes, args).items():
                eval_lines.append(
                    f"| VOC-sized image, slide (2 windows) | {precision} | {benchlib.fmt_time(times)} "
                    f"| {1 / statistics.median(times):.1f} |"
                )
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    text = "\n".join(lines + eval_lines) + "\n"
    if args.smoke and args.out is None:
        print(text)
    else:
        benchlib.write_result("gpu_benchmark", text, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
