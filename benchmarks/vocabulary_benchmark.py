"""Cost at vocabulary scale: time and the memory one evaluation call adds against the number of classes.

    python benchmarks/vocabulary_benchmark.py [--classes 20,150,255,459,847] [--repeats 3] [--out FILE]

Workloads (ViT-B/16, random weights, text embeddings precomputed: random unit vectors, the same
file for both implementations; every class seen, no calibration offset, as in cross-dataset
evaluation and the official ``configs/cross_dataset`` configs):

* **crop**: one 512x512 crop, whole-image mode, the labels (argmax) at 512x512.
* **A-847 image**: a prepared A-847 image of 512x683 (short side 512), sliding windows of 512
  every 426 pixels (2 windows), labels at 512x683, as evaluation does it.
* **large image**: an original of 1536x2048 resized to 512x683 for the windows, the labels at
  1536x2048 (the scores are resized to the original size before the argmax).

Implementations: ``zegclip`` (evaluation's path: :meth:`ZegCLIP.segment_labels`, windows scored
once at the decoder grid, classes assembled a chunk at a time), ``zegclip full`` (the full-score
path evaluation used before: :meth:`ZegCLIP.segment`, resize, argmax), ``official`` (the official
code through ``../shared/official_harness``, ``encode_decode`` / ``slide_inference`` then resize
and argmax; needs ``ZEGCLIP_REF``). Each measurement runs in a fresh process: the memory a call
adds is the peak resident set during the timed calls minus the resident set before them (model,
inputs and text embeddings excluded). Median (min) over ``--repeats`` calls after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import benchlib

CLASSES = (20, 150, 255, 459, 847)
CROP, STRIDE = 512, 426
IMAGE = (512, 683)  # a prepared A-847 image (short side 512)
LARGE = (1536, 2048)  # an original resized to 512 x 683 for the windows
WORKLOADS = {
    "crop": "one 512x512 crop, whole mode",
    "image": "A-847 image 512x683, slide (2 windows)",
    "large": "1536x2048 original (slide at 512x683), labels at 1536x2048",
}
FULL_LIMIT = 2 * 2**30
IMPLS = {"zegclip": "zegclip", "zegclip full": "zegclip_full", "official": "official"}
"""The full-score path is not run where its (C, H, W) scores alone would pass this."""


# ----------------------------------------------------------------------------- worker


def _build(spec: dict[str, Any]) -> tuple[Any, torch.Tensor]:
    """The model of the worker's implementation and the text embeddings ``(C, 512)``."""
    text = torch.from_numpy(np.load(spec["text"]))
    if spec["impl"] == "official":
        harness, note = benchlib.official_harness()
        if harness is None:
            raise RuntimeError(note)
        classes = [f"class {i}" for i in range(spec["classes"])]
        cfg = benchlib.official_config(harness, classes, list(range(spec["classes"])), 10)
        ref = harness.build_reference(cfg)
        harness.load_weights(ref, torch.load(spec["weights"], map_location="cpu", weights_only=False)["state_dict"])
        ref.load_text_embedding = spec["text"]
        return ref.eval(), text
    import zegclip

    if spec.get("weights"):
        return zegclip.load(spec["weights"]).eval(), text
    from zegclip import CLIPConfig, ZegCLIPConfig

    torch.manual_seed(0)
    config = ZegCLIPConfig(clip=CLIPConfig(model_name="ViT-B-16"), image_size=512, prompt_tokens=10)
    if spec.get("smoke"):
        arch = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 3, "head_width": 16},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}}  # fmt: skip
        config = ZegCLIPConfig(clip=CLIPConfig(arch=arch), image_size=512, prompt_tokens=3, decoder_heads=4)
    return zegclip.ZegCLIP(config).eval(), text


def _call(spec: dict[str, Any], model: Any, text: torch.Tensor) -> Any:
    """The workload's call: a function returning the labels."""
    gen = torch.Generator().manual_seed(0)
    workload, impl = spec["workload"], spec["impl"]
    size = (CROP, CROP) if workload == "crop" else IMAGE
    pixels = torch.randn(1, 3, *size, generator=gen)
    out_size = {"crop": None, "image": IMAGE, "large": LARGE}[workload]
    mode = "whole" if workload == "crop" else "slide"
    bf16 = spec.get("precision") == "bf16"

    def resize_argmax(scores: torch.Tensor) -> torch.Tensor:
        if out_size is not None:
            scores = F.interpolate(scores, size=out_size, mode="bilinear", align_corners=False)
        return scores.argmax(1)

    def call() -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if impl == "official":
                if mode == "whole":
                    return resize_argmax(model.encode_decode(pixels, [{}]))
                return resize_argmax(model.slide_inference(pixels, [{"ori_shape": (*size, 3)}], rescale=False))
            args = {"text_embeddings": text, "seen": None, "mode": mode, "crop": CROP, "stride": STRIDE}
            if impl == "zegclip":
                return model.segment_labels(pixels, out_size=out_size, **args)
            return resize_argmax(model.segment(pixels, **args))

    return call


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    benchlib.set_threads(spec["threads"])
    model, text = _build(spec)
    call = _call(spec, model, text)
    labels = call()  # warm-up (and the labels, for the agreement check)
    base = benchlib.reset_peak_rss()
    times = benchlib.timed(call, repeats=spec["repeats"], warmup=0)
    added = benchlib.peak_rss() - base
    np.save(spec["labels"], labels.numpy().astype(np.int16))
    return {"times": times, "added": added}


# ----------------------------------------------------------------------------- driver


def official_weights(tmp: Path) -> tuple[str | None, str]:
    """An official-format checkpoint of random ViT-B/16 weights (None without the harness)."""
    harness, note = benchlib.official_harness()
    if harness is None:
        return None, note
    torch.manual_seed(0)
    cfg = benchlib.official_config(harness, [f"class {i}" for i in range(20)], list(range(20)), 10)
    ref = harness.build_reference(cfg)
    path = tmp / "official.pth"
    torch.save(harness.make_checkpoint(ref, cfg, "vocabulary_benchmark", 0), path)
    return str(path), ""


def full_bytes(workload: str, classes: int) -> int:
    h, w = {"crop": (CROP, CROP), "image": IMAGE, "large": LARGE}[workload]
    return classes * h * w * 4


def run(args: argparse.Namespace) -> tuple[dict[tuple[str, str, str, int], dict[str, Any]], dict[str, Any]]:
    results: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    info: dict[str, Any] = {"agree": {}, "skipped": [], "rates": [benchlib.gemm_rate()]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights, info["note"] = (None, "Smoke run (tiny model): checks the script, measures nothing.") if args.smoke \
            else official_weights(tmp)  # fmt: skip
        plan = []
        for classes in args.classes:
            for workload in args.workloads:
                impls = [("zegclip", "fp32"), ("zegclip full", "fp32"), ("official", "fp32")]
                if workload == "crop" and args.bf16:
                    impls.insert(1, ("zegclip", "bf16"))
                for impl, precision in impls:
                    if impl == "official" and (weights is None or workload == "large"):
                        continue
                    if impl != "zegclip" and full_bytes(workload, classes) > FULL_LIMIT:
                        info["skipped"].append((workload, impl, classes, full_bytes(workload, classes)))
                        continue
                    plan.append((workload, impl, precision, classes))
        for workload, impl, precision, classes in plan:
            text = tmp / f"text_{classes}.npy"
            if not text.is_file():
                gen = torch.Generator().manual_seed(classes)
                np.save(text, F.normalize(torch.randn(classes, 32 if args.smoke else 512, generator=gen), dim=-1).numpy())
            labels = tmp / f"labels_{workload}_{impl.replace(' ', '_')}_{precision}_{classes}.npy"
            spec = {"impl": IMPLS[impl], "workload": workload,
                    "precision": precision, "classes": classes, "text": str(text), "weights": weights,
                    "repeats": args.repeats, "threads": args.threads, "labels": str(labels), "smoke": args.smoke}  # fmt: skip
            print(f"[vocabulary_benchmark] {workload} {impl} {precision} C={classes} ...", file=sys.stderr, flush=True)
            results[(workload, impl, precision, classes)] = benchlib.run_child(Path(__file__), spec)
            if impl != "zegclip" or precision != "fp32":  # agreement of the labels with the fp32 chunked path
                ours = np.load(tmp / f"labels_{workload}_zegclip_fp32_{classes}.npy")
                info["agree"][(workload, impl, precision, classes)] = float((np.load(labels) == ours).mean())
    info["rates"].append(benchlib.gemm_rate())
    return results, info


def render(command: str, results: dict[tuple[str, str, str, int], dict[str, Any]], info: dict[str, Any]) -> str:
    out = [benchlib.header(command, info.get("note", ""))]
    out.append(f"GEMM rate measured in this run: fp32 {statistics.median(info['rates']):.0f} GFLOP/s.")
    out += ["", "| workload | C | implementation | precision | time, median (min) | memory the call adds | "
            "time / official | memory / official | labels = zegclip fp32 |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    classes = sorted({k[3] for k in results})
    for workload in WORKLOADS:
        for c in classes:
            official = results.get((workload, "official", "fp32", c))
            for (w, impl, precision, cc), r in results.items():
                if (w, cc) != (workload, c):
                    continue
                med = statistics.median(r["times"])
                vs_t = f"{med / statistics.median(official['times']):.2f}x" if official and impl != "official" else "-"
                vs_m = f"{r['added'] / official['added']:.2f}x" if official and impl != "official" and official["added"] > 0 else "-"
                agree = info["agree"].get((w, impl, precision, cc))
                agree_cell = "-" if agree is None else f"{100 * agree:.3f}%"
                out.append(f"| {WORKLOADS[workload]} | {c} | {impl} | {precision} | {benchlib.fmt_time(r['times'])} | "
                           f"{benchlib.gib(r['added'])} | {vs_t} | {vs_m} | {agree_cell} |")  # fmt: skip
    for workload, impl, c, size in info["skipped"]:
        out.append(f"| {WORKLOADS[workload]} | {c} | {impl} | fp32 | not run: its (C, H, W) scores alone take "
                   f"{benchlib.gib(size)} | | | | |")  # fmt: skip
    out.append("")
    if not info.get("smoke"):
        out += targets(results)
    out.append(f"Load average at the end: {benchlib.load_average()}.")
    return "\n".join(out) + "\n"


def targets(results: dict[tuple[str, str, str, int], dict[str, Any]]) -> list[str]:
    def get(workload: str, impl: str, c: int, precision: str = "fp32") -> dict[str, Any] | None:
        return results.get((workload, impl, precision, c))

    lines = ["| target | measured | met |", "|---|---|---|"]
    ours, off = get("crop", "zegclip", 255), get("crop", "official", 255)
    if ours and off:
        for precision in ("fp32", "bf16"):
            mine = get("crop", "zegclip", 255, precision)
            if mine:
                r = statistics.median(mine["times"]) / statistics.median(off["times"])
                lines.append(f"| C = 255, one crop: zegclip {precision} time <= 0.6x official fp32 | {r:.2f}x | "
                             f"{'yes' if r <= 0.6 else '**no**'} |")  # fmt: skip
        r = ours["added"] / off["added"]
        lines.append(f"| C = 255, one crop: memory the call adds <= 0.4x official | {r:.2f}x | {'yes' if r <= 0.4 else '**no**'} |")
    crop847 = get("crop", "zegclip", 847)
    if crop847:
        gib = crop847["added"] / 2**30
        lines.append(f"| C = 847, one crop adds <= 1.0 GiB | {gib:.2f} GiB | {'yes' if gib <= 1.0 else '**no**'} |")
    for workload in ("image", "large"):
        small, big = get(workload, "zegclip", 20), get(workload, "zegclip", 847)
        if small and big:
            lines.append(f"| {WORKLOADS[workload]}, C = 847: bounded memory (C = 20 -> 847) | "
                         f"{benchlib.gib(small['added'])} -> {benchlib.gib(big['added'])} | "
                         f"{'yes' if big['added'] <= 1.5 * 2**30 else '**no**'} |")  # fmt: skip
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=benchlib.THREADS)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 (autocast) crop rows")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 repeat, C = 20 and 300: checks the script")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="result file (default benchmarks/results/vocabulary_benchmark.md)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    args.classes = [int(c) for c in args.classes.split(",")]
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}: choose from {list(WORKLOADS)}")
    if args.smoke:
        args.repeats, args.classes, args.workloads = 1, [20, 300], ["crop", "image"]
    benchlib.set_threads(args.threads)
    command = "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    results, info = run(args)
    info["smoke"] = args.smoke
    benchlib.write_result("vocabulary_benchmark", render(command, results, info), args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
