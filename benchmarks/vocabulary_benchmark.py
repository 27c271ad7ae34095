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
"""The full-score paths (ours before, the official) are not run where their (C, H, W) scores alone
would pass this (the machine is shared)."""


# ----------------------------------------------------------------------------- worker


def _build(spec: dict[str, Any], impl: str) -> Any:
    """The model of ``impl`` (``official`` or one of ours) on the benchmark's weights."""
    if impl == "official":
        harness, note = benchlib.official_harness()
        if harness is None:
            raise RuntimeError(note)
        classes = [f"class {i}" for i in range(spec["classes"])]
        cfg = benchlib.official_config(harness, classes, list(range(spec["classes"])), 10)
        ref = harness.build_reference(cfg)
        harness.load_weights(
            ref, torch.load(spec["weights"], map_location="cpu", weights_only=False)["state_dict"]
        )
        ref.load_text_embedding = spec["text"]  # precomputed, as the official configs do
        return ref.eval()
    import zegclip

    if spec.get("weights"):
        return zegclip.load(spec["weights"], precision="fp32").eval()  # bf16 rows: autocast in _call
    from zegclip import CLIPConfig, ZegCLIPConfig

    torch.manual_seed(0)
    arch = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 3, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    }
    config = ZegCLIPConfig(
        clip=CLIPConfig(arch=arch), image_size=512, prompt_tokens=3, decoder_heads=4
    )  # smoke
    return zegclip.ZegCLIP(config).eval()


def _call(spec: dict[str, Any], impl: str, model: Any, text: torch.Tensor) -> Any:
    """The workload's call for ``impl`` (``zegclip``, ``zegclip bf16``, ``zegclip full``,
    ``official``): a function returning the labels."""
    gen = torch.Generator().manual_seed(0)
    workload = spec["workload"]
    size = (CROP, CROP) if workload == "crop" else IMAGE
    pixels = torch.randn(1, 3, *size, generator=gen)
    out_size = {"crop": None, "image": IMAGE, "large": LARGE}[workload]
    mode = "whole" if workload == "crop" else "slide"
    bf16 = impl.endswith("bf16")

    def resize_argmax(scores: torch.Tensor) -> torch.Tensor:
        if out_size is not None:
            scores = F.interpolate(scores, size=out_size, mode="bilinear", align_corners=False)
        return scores.argmax(1)

    def call() -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if impl == "official":
                if mode == "whole":
                    return resize_argmax(model.encode_decode(pixels, [{}]))
                return resize_argmax(
                    model.slide_inference(pixels, [{"ori_shape": (*size, 3)}], rescale=False)
                )
            args = {"text_embeddings": text, "seen": None, "mode": mode, "crop": CROP, "stride": STRIDE}
            if impl == "zegclip full":
                return resize_argmax(model.segment(pixels, **args))
            return model.segment_labels(pixels, out_size=out_size, **args)

    return call


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """``time``: every implementation of the spec in this process, their calls interleaved (each
    sees the same load), with the labels' agreement with ours; ``memory``: one implementation,
    the memory one call adds."""
    benchlib.set_threads(spec["threads"])
    text = torch.from_numpy(np.load(spec["text"]))
    impls = spec["impls"]
    models = {"official": None, "ours": None}
    calls = {}
    for impl in impls:
        key = "official" if impl == "official" else "ours"
        if models[key] is None:
            models[key] = _build(spec, impl)
        calls[impl] = _call(spec, impl, models[key], text)
    labels = {impl: call() for impl, call in calls.items()}  # warm-up, and the labels
    if spec["mode"] == "memory":
        (impl,) = impls
        base = benchlib.reset_peak_rss()
        calls[impl]()
        return {"added": benchlib.peak_rss() - base}
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(spec["repeats"]):
        for impl, call in calls.items():
            times[impl] += benchlib.timed(call, repeats=1, warmup=0)
    ours = labels.get("zegclip")
    agree = {
        impl: float((lab == ours).float().mean())
        for impl, lab in labels.items()
        if ours is not None and impl != "zegclip"
    }
    return {"times": times, "agree": agree}


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


def plan_impls(workload: str, classes: int, official: bool, bf16: bool, skipped: list) -> list[str]:
    impls = ["zegclip", *(["zegclip bf16"] if bf16 and workload == "crop" else []), "zegclip full"]
    if official and workload != "large":
        impls.append("official")
    kept = []
    for impl in impls:
        if impl in ("zegclip full", "official") and full_bytes(workload, classes) > FULL_LIMIT:
            skipped.append((workload, impl, classes, full_bytes(workload, classes)))
        else:
            kept.append(impl)
    return kept


def run(args: argparse.Namespace) -> tuple[dict[tuple[str, str, int], dict[str, Any]], dict[str, Any]]:
    """``{(workload, implementation, C): {"times", "added", "agree"}}`` and the run's facts."""
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    info: dict[str, Any] = {"skipped": [], "rates": [benchlib.gemm_rate()]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights, info["note"] = (
            (None, "Smoke run (tiny model): checks the script, measures nothing.")
            if args.smoke
            else official_weights(tmp)
        )
        for classes in args.classes:
            text = tmp / f"text_{classes}.npy"
            gen = torch.Generator().manual_seed(classes)
            np.save(
                text,
                F.normalize(torch.randn(classes, 32 if args.smoke else 512, generator=gen), dim=-1).numpy(),
            )
            for workload in args.workloads:
                impls = plan_impls(workload, classes, weights is not None, args.bf16, info["skipped"])
                spec = {
                    "workload": workload,
                    "classes": classes,
                    "text": str(text),
                    "weights": weights,
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "impls": impls,
                    "mode": "time",
                }
                print(
                    f"[vocabulary_benchmark] {workload} C={classes}: {impls} ...", file=sys.stderr, flush=True
                )
                timed = benchlib.run_child(Path(__file__), spec)
                for impl in impls:
                    # a process per implementation for its memory; the smoke run measures one (the path, once)
                    measure = not args.smoke or not results
                    memory = (
                        benchlib.run_child(Path(__file__), {**spec, "impls": [impl], "mode": "memory"})
                        if measure
                        else {"added": None}
                    )
                    results[(workload, impl, classes)] = {
                        "times": timed["times"][impl],
                        "added": memory["added"],
                        "agree": timed["agree"].get(impl),
                    }
    info["rates"].append(benchlib.gemm_rate())
    return results, info


def cpu_capabilities() -> str:
    """Which of AVX2, AVX-512 (F, BF16) and AMX the CPU reports (``/proc/cpuinfo`` flags)."""
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        ).split()
    except (OSError, StopIteration):
        return "CPU flags unknown"
    names = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX"}
    return "CPU flags: " + ", ".join(
        f"{label} {'yes' if flag in flags else 'no'}" for flag, label in names.items()
    )


def render(command: str, results: dict[tuple[str, str, int], dict[str, Any]], info: dict[str, Any]) -> str:
    out = [benchlib.header(command, " ".join(filter(None, [info.get("note", ""), cpu_capabilities() + "."])))]
    out.append(
        f"GEMM rate measured in this run: fp32 {statistics.median(info['rates']):.0f} GFLOP/s. "
        "Implementations of a row group were timed in one process, their calls interleaved."
    )
    out += [
        "",
        "| workload | C | implementation | time, median (min) | memory the call adds | "
        "time / official | memory / official | labels = zegclip's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (workload, impl, c), r in results.items():
        official = results.get((workload, "official", c))
        med = statistics.median(r["times"])
        vs_t = (
            f"{med / statistics.median(official['times']):.2f}x" if official and impl != "official" else "-"
        )
        vs_m = (
            f"{r['added'] / official['added']:.2f}x"
            if official and impl != "official" and (official["added"] or 0) > 0 and r["added"] is not None
            else "-"
        )
        agree = "-" if r["agree"] is None else f"{100 * r['agree']:.3f}%"
        added = "not measured (smoke run)" if r["added"] is None else benchlib.gib(r["added"])
        out.append(
            f"| {WORKLOADS[workload]} | {c} | {impl} | {benchlib.fmt_time(r['times'])} | "
            f"{added} | {vs_t} | {vs_m} | {agree} |"
        )
    for workload, impl, c, size in info["skipped"]:
        out.append(
            f"| {WORKLOADS[workload]} | {c} | {impl} | not run: its (C, H, W) float32 scores alone "
            f"take {benchlib.gib(size)} | | | | |"
        )
    out.append("")
    if not info.get("smoke"):
        out += targets(results)
    out.append(f"Load average at the end: {benchlib.load_average()}.")
    return "\n".join(out) + "\n"


def targets(results: dict[tuple[str, str, int], dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]
    off = results.get(("crop", "official", 255))
    if off:
        for impl in ("zegclip", "zegclip bf16"):
            mine = results.get(("crop", impl, 255))
            if mine:
                r = statistics.median(mine["times"]) / statistics.median(off["times"])
                lines.append(
                    f"| C = 255, one crop: {impl} time <= 0.6x official (fp32) | {r:.2f}x | "
                    f"{'yes' if r <= 0.6 else '**no**'} |"
                )
        mine = results.get(("crop", "zegclip", 255))
        if mine:
            r = mine["added"] / off["added"]
            lines.append(
                f"| C = 255, one crop: memory the call adds <= 0.4x official | {r:.2f}x | "
                f"{'yes' if r <= 0.4 else '**no**'} |"
            )
    crop847 = results.get(("crop", "zegclip", 847))
    if crop847:
        gib = crop847["added"] / 2**30
        lines.append(
            f"| C = 847, one crop adds <= 1.0 GiB | {gib:.2f} GiB | {'yes' if gib <= 1.0 else '**no**'} |"
        )
    for workload in ("image", "large"):
        small, big = results.get((workload, "zegclip", 20)), results.get((workload, "zegclip", 847))
        if small and big:
            lines.append(
                f"| {WORKLOADS[workload]}, C = 847: bounded memory (C = 20 -> 847) | "
                f"{benchlib.gib(small['added'])} -> {benchlib.gib(big['added'])} | "
                f"{'yes' if big['added'] <= 1.5 * 2**30 else '**no**'} |"
            )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=benchlib.THREADS)
    parser.add_argument(
        "--no-bf16", dest="bf16", action="store_false", help="skip the bf16 (autocast) crop rows"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny model, 1 repeat, C = 20 and 300, one memory process: checks the script",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/vocabulary_benchmark.md)"
    )
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
        args.repeats, args.classes, args.workloads = 1, [300], ["crop", "image"]
    benchlib.set_threads(args.threads)
    command = "python benchmarks/" + " ".join(
        [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    )
    results, info = run(args)
    info["smoke"] = args.smoke
    benchlib.write_result("vocabulary_benchmark", render(command, results, info), args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
