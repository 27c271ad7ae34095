"""Inference speed on CPU: zegclip (fp32, bf16-mixed, bf16) against the FLOP floor and the
official code.

    python benchmarks/inference_benchmark.py [--repeats 5] [--capability native|avx2|avx512] [--out FILE]

Precisions (``precision=...`` of ``predict.py`` / ``eval.py`` / ``zegclip.load``): fp32;
bf16-mixed (bf16 autocast over fp32 weights, what ``precision=auto`` picks where bf16 is native);
bf16 (the weights cast). ``--capability avx2`` measures as on a CPU with AVX2 only (no AVX-512, no
bf16 instructions), ``avx512`` as on one with AVX-512 but no bf16 instructions (the script runs
again with ``benchlib.CAPABILITIES``' settings); the result file names the CPU, the capability used
and the torch version, and marks bf16 rows where bf16 is emulated.

Rows:

* **whole crop**: one 512x512 crop, 20 VOC classes, whole-image mode (``model.segment(...,
  mode="whole")``; official: ``encode_decode``). Seconds per crop.
* **slide, VOC-sized image**: a 500x375 image resized to short side 512 (683x512), sliding
  windows of 512 every 426 pixels (2 windows), scores resized to 500x375 and argmax, as the
  evaluation does (data loading excluded). Images per second.
* **shapes test set**: the bundled shapes model (``zegclip.load("shapes")``) on the 1,000
  generated test images (64x64, batches of 50, one window each), scores and argmax (images
  generated beforehand). Images per second.

ViT-B/16 rows use the same random weights in both implementations (an official-format
checkpoint; without ``ZEGCLIP_REF`` the official column is skipped and zegclip uses its own
random weights). The FLOP floor is the GEMM FLOPs (``benchlib.zegclip_step_flops``, forward only)
over the GEMM rate measured in the same run. Median (min) over ``--repeats`` rounds after a
warm-up; each round runs every row of a workload group once (interleaved), so that a change of
the machine's load hits all rows alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import benchlib

VOC_IMAGE = (375, 500)  # H, W of a typical VOC image
SHORT_SIDE, CROP, STRIDE = 512, 512, 426


PRECISIONS = ("fp32", "bf16-mixed", "bf16")


def autocast(precision: str):
    return (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()
    )


def variants(model: Any) -> dict[str, Any]:
    """The model each precision runs: fp32 weights (fp32, bf16-mixed) or a bf16 copy (bf16)."""
    return {"fp32": model, "bf16-mixed": model, "bf16": copy.deepcopy(model).to(torch.bfloat16)}


def auto_precision() -> str:
    """What ``precision=auto`` picks on this CPU."""
    from zegclip.model.precision import choose

    return choose("auto", "cpu").precision


def vit_models(tmp: str, smoke: bool) -> tuple[Any, Any, list[str], list[int], str]:
    """(zegclip model, official model or None, class names, seen ids, note)."""
    import zegclip
    from zegclip.data.classes import class_names

    names = class_names("voc")
    seen = list(range(15))
    harness, note = benchlib.official_harness()
    if smoke:
        from zegclip import CLIPConfig, ZegCLIPConfig

        arch = {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 3, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
        }
        torch.manual_seed(0)
        model = zegclip.ZegCLIP(
            ZegCLIPConfig(clip=CLIPConfig(arch=arch), image_size=64, prompt_tokens=3, decoder_heads=4)
        )
        return model.eval(), None, names, seen, "Smoke run (tiny model): checks the script, measures nothing."
    if harness is None:
        from zegclip import CLIPConfig, ZegCLIPConfig

        torch.manual_seed(0)
        model = zegclip.ZegCLIP(
            ZegCLIPConfig(clip=CLIPConfig(model_name="ViT-B-16"), image_size=512, prompt_tokens=10)
        )
        return model.eval(), None, names, seen, note
    torch.manual_seed(0)
    cfg = benchlib.official_config(harness, names, seen, 10)
    ref = harness.build_reference(cfg)
    path = Path(tmp) / "official_voc.pth"
    torch.save(harness.make_checkpoint(ref, cfg, "benchmark_voc", 0), path)
    model = zegclip.load(path, precision="fp32")
    np.save(Path(tmp) / "text.npy", model.class_embeddings(names).numpy())
    ref.load_text_embedding = str(Path(tmp) / "text.npy")  # precomputed, as the official configs do
    return model.eval(), ref.eval(), names, seen, note


def interleaved(fns: dict[Any, Callable[[], Any]], repeats: int) -> dict[Any, list[float]]:
    """Each function once per round, ``repeats`` rounds after one warm-up call each, so that a
    change of the machine's load hits every row alike."""
    times: dict[Any, list[float]] = {key: [] for key in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn()
        for _ in range(repeats):
            for key, fn in fns.items():
                times[key] += benchlib.timed(fn, repeats=1, warmup=0)
    return times


def run_vit(
    args: argparse.Namespace, times: dict[tuple[str, str, str], list[float]], info: dict[str, Any]
) -> None:
    """The ViT-B/16 rows (whole crop and slide), both implementations on the same weights."""
    size = 64 if args.smoke else 512
    with tempfile.TemporaryDirectory() as tmp:
        model, ref, names, seen, info["note"] = vit_models(tmp, args.smoke)
        text = model.class_embeddings(names)
        gen = torch.Generator().manual_seed(0)
        crop = torch.randn(1, 3, size, size, generator=gen)
        h, w = VOC_IMAGE
        resized = torch.randn(1, 3, SHORT_SIDE, SHORT_SIDE * w // h, generator=gen)  # 512 x 682
        if args.smoke:
            resized = torch.randn(1, 3, 64, 85, generator=gen)
        window, stride = (64, 53) if args.smoke else (CROP, STRIDE)

        fns: dict[tuple[str, str, str], Callable[[], Any]] = {}
        for precision, net in variants(model).items():

            def whole(net: Any = net, precision: str = precision) -> torch.Tensor:
                with autocast(precision):
                    return net.segment(crop, text_embeddings=text, seen=seen, mode="whole")

            def slide(net: Any = net, precision: str = precision) -> torch.Tensor:
                with autocast(precision):
                    scores = net.segment(
                        resized, text_embeddings=text, seen=seen, mode="slide", crop=window, stride=stride
                    )
                return F.interpolate(
                    scores.float(), size=VOC_IMAGE, mode="bilinear", align_corners=False
                ).argmax(1)

            fns[("whole", "zegclip", precision)] = whole
            fns[("slide", "zegclip", precision)] = slide
        if ref is not None:
            with torch.no_grad():
                err = (
                    (
                        ref.encode_decode(crop, [{}])
                        - model.segment(crop, text_embeddings=text, seen=seen, mode="whole")
                    )
                    .abs()
                    .max()
                )
            info["official_difference"] = float(err)
            metas = [{"ori_shape": (*VOC_IMAGE, 3)}]

            def ref_slide() -> torch.Tensor:
                scores = ref.slide_inference(resized, metas, rescale=False)
                return F.interpolate(scores, size=VOC_IMAGE, mode="bilinear", align_corners=False).argmax(1)

            fns[("whole", "official", "fp32")] = lambda: ref.encode_decode(crop, [{}])
            fns[("slide", "official", "fp32")] = ref_slide
        times.update(interleaved(fns, args.repeats))
    info["flops"] = benchlib.zegclip_step_flops(
        1,
        size // 16,
        3 if args.smoke else 10,
        len(names),
        train=False,
        **({"embed": 32, "width": 64} if args.smoke else {}),
    )
    info["windows"] = 2


def run(args: argparse.Namespace) -> tuple[dict[tuple[str, str, str], list[float]], dict[str, Any]]:
    times: dict[tuple[str, str, str], list[float]] = {}
    info: dict[str, Any] = {"rates": {"fp32": [], "bf16": []}, "smoke": args.smoke, "auto": auto_precision()}

    def rates() -> None:
        info["rates"]["fp32"].append(benchlib.gemm_rate(torch.float32))
        info["rates"]["bf16"].append(benchlib.gemm_rate(torch.bfloat16))

    rates()
    run_vit(args, times, info)
    rates()

    # the shapes test set with the bundled model
    import zegclip
    from zegclip.data.shapes import ShapesSegmentationDataset
    from zegclip.data.transforms import build_test_transform

    shapes = zegclip.load("shapes", precision="fp32")
    dataset = ShapesSegmentationDataset(
        split="test", transform=build_test_transform(64), test_size=100 if args.smoke else 1000
    )
    batches = []
    for start in range(0, len(dataset), 50):
        items = [dataset[i] for i in range(start, min(start + 50, len(dataset)))]
        batches.append(torch.stack([it["image"] for it in items]))
    info["shapes_images"] = len(dataset)
    shapes_text = shapes.class_embeddings(shapes.metadata["class_names"])
    shape_fns = {}
    for precision, net in variants(shapes).items():

        def shapes_eval(net: Any = net, precision: str = precision) -> None:
            for batch in batches:
                with autocast(precision):
                    net.segment(batch, text_embeddings=shapes_text, mode="slide", crop=64, stride=53).argmax(
                        1
                    )

        shape_fns[("shapes", "zegclip", precision)] = shapes_eval
    times.update(interleaved(shape_fns, max(1, args.repeats // 2)))
    return times, info


def render(command: str, times: dict[tuple[str, str, str], list[float]], info: dict[str, Any]) -> str:
    out = [benchlib.header(command, info.get("note", ""))]
    rate = {k: statistics.median(v) for k, v in info["rates"].items()}
    out.append(
        f"GEMM rate measured in this run: fp32 {rate['fp32']:.0f} GFLOP/s, bf16 {rate['bf16']:.0f} GFLOP/s; "
        f"forward GEMM FLOPs of one 512x512 crop: {info['flops'] / 1e9:.0f} GFLOP."
    )
    if "official_difference" in info:
        out.append(
            "Largest difference of the whole-crop scores, official vs zegclip: "
            f"{info['official_difference']:.2g}."
        )
    out += [
        "",
        "| workload | implementation | precision | time, median (min) | throughput | FLOP floor "
        "| time / floor | time / official |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("whole", "one 512x512 crop, 20 classes, whole mode", 1, 1),
        ("slide", "VOC-sized image (500x375 -> 683x512), slide, 2 windows", 1, info["windows"]),
        (
            "shapes",
            f"shapes test set ({info['shapes_images']} images, 64x64), bundled model",
            info["shapes_images"],
            None,
        ),
    ]
    for key, label, images, windows in rows:
        official = times.get((key, "official", "fp32"))
        for impl, precision in (("official", "fp32"), *(("zegclip", p) for p in PRECISIONS)):
            t = times.get((key, impl, precision))
            if t is None:
                continue
            med = statistics.median(t)
            if windows:
                floor = windows * info["flops"] / (rate["fp32" if precision == "fp32" else "bf16"] * 1e9)
                floor_cells = f"{floor:.2f} s | {med / floor:.2f}x"
            else:
                floor_cells = "- | -"
            vs = f"{med / statistics.median(official):.2f}x" if official else "-"
            cell = benchlib.precision_label(precision)
            out.append(
                f"| {label} | {impl} | {cell} | {benchlib.fmt_time(t)} | {images / med:.2f} images/s | "
                f"{floor_cells} | {vs} |"
            )
    out.append("")
    if info["smoke"]:
        return "\n".join(out) + "\n"
    auto = info["auto"]
    out.append(
        f"`precision=auto` picks **{auto}** on this CPU "
        f"({'bf16 native' if auto != 'fp32' else 'no native bf16'})."
    )
    out.append("")
    out.append("| target | measured: ratio of medians (of the fastest runs) | met (medians) |")
    out.append("|---|---|---|")
    for key in ("whole", "slide", "shapes"):
        fp32, off = times.get((key, "zegclip", "fp32")), times.get((key, "official", "fp32"))
        checks = [
            (f"{key}: zegclip fp32 <= 1.0x official", fp32, off, 1.0),
            (f"{key}: precision=auto ({auto}) <= 1.0x fp32", times.get((key, "zegclip", auto)), fp32, 1.0),
        ]
        checks += [
            (
                f"{key}: {p} / fp32{'' if auto != 'fp32' else ' (emulated)'}",
                times.get((key, "zegclip", p)),
                fp32,
                0.6 if auto != "fp32" and p == "bf16-mixed" and key != "shapes" else None,
            )
            for p in PRECISIONS[1:]
        ]
        for label, num, den, limit in checks:
            if num and den:
                r = statistics.median(num) / statistics.median(den)
                met = "-" if limit is None else ("yes" if r <= limit else "**no**")
                out.append(f"| {label} | {r:.2f}x ({min(num) / min(den):.2f}x) | {met} |")
    out.append("")
    out.append(f"Load average at the end: {benchlib.load_average()}.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=benchlib.THREADS)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 repeat: checks the script")
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/inference_benchmark.md)"
    )
    benchlib.add_capability_option(parser)
    args = parser.parse_args(argv)
    code = benchlib.relaunch_with_capability(args.capability, sys.argv[1:] if argv is None else argv)
    if code is not None:
        return code
    if args.smoke:
        args.repeats = 1
    benchlib.set_threads(args.threads)
    command = "python benchmarks/" + " ".join(
        [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    )
    times, info = run(args)
    benchlib.write_result(
        benchlib.result_name("inference_benchmark", args.capability), render(command, times, info), args.out
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
