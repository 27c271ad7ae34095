"""The VOC fp32 training step under CPU settings: what a CPU with AVX2 only leaves on the table.

    python benchmarks/cpu_settings.py [--repeats 3] [--variants ...] [--smoke] [--out FILE]

Each variant runs the zegclip VOC fp32 step of ``train_benchmark.py`` (B=2 512x512 crops, 10
prompts, 15 seen classes, forward + loss + backward) alone in a fresh process: warm-up, then
``--repeats`` timed steps (median and min). All variants but ``native`` start from
``benchlib.CAPABILITIES["avx2"]`` (ATen kernels, oneDNN and MKL at AVX2), as on a CPU without
AVX-512:

* ``avx2``: that alone (the baseline; run first and again last to show the drift of the load);
* ``avx2, ATen kernels at AVX-512``: only the GEMM libraries at AVX2 (what ATen's own vector code,
  flash attention and element-wise operations, costs at AVX2);
* ``avx2, MKL unrestricted``: MKL picks its own code path (its fp32 GEMMs);
* ``avx2, OpenMP threads bound``: ``OMP_PROC_BIND=close OMP_PLACES=cores``;
* ``avx2, glibc malloc keeps memory``: ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
  raised so that the step's large buffers are reused instead of mapped and zeroed every step;
* ``avx2, channels-last patch embedding``: the 16x16 patch convolution in NHWC;
* ``native``: nothing lowered (this CPU as it is).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

import benchlib

AVX2 = benchlib.CAPABILITIES["avx2"]
VARIANTS: dict[str, dict[str, Any]] = {
    "avx2": {"env": AVX2},
    "avx2-aten512": {
        "env": {k: v for k, v in AVX2.items() if k != "ATEN_CPU_CAPABILITY"},
        "label": "avx2, ATen kernels at AVX-512",
    },
    "avx2-mkl": {
        "env": {k: v for k, v in AVX2.items() if k != "MKL_ENABLE_INSTRUCTIONS"},
        "label": "avx2, MKL unrestricted",
    },
    "avx2-bind": {
        "env": {**AVX2, "OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
        "label": "avx2, OpenMP threads bound",
    },
    "avx2-malloc": {
        "env": {**AVX2, "MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)},
        "label": "avx2, glibc malloc keeps memory",
    },
    "avx2-channels-last": {
        "env": AVX2,
        "channels_last": True,
        "label": "avx2, channels-last patch embedding",
    },
    "native": {"env": {}, "label": "native (nothing lowered)"},
}
LOWERING = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One variant in this process: warm-up, then ``repeats`` timed steps."""
    import train_benchmark

    benchlib.set_threads(spec["threads"])
    steps = train_benchmark.Steps({"scale": spec["scale"], "checkpoint": None, "tmp": ""})
    step = steps.zegclip("fp32", False)
    if VARIANTS[spec["variant"]].get("channels_last"):
        conv = steps.model.image_encoder.vit.conv1
        conv.to(memory_format=torch.channels_last)
        steps.images = steps.images.contiguous(memory_format=torch.channels_last)
    step()
    times = benchlib.timed(step, repeats=spec["repeats"], warmup=0)
    return {"times": times, "machine": benchlib.describe_machine(), "load_end": benchlib.load_average()}


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    env_before = {k: os.environ.pop(k) for k in LOWERING if k in os.environ}
    os.environ.update(VARIANTS[name]["env"])
    try:
        spec = {
            "variant": name,
            "scale": "smoke" if args.smoke else "voc",
            "threads": args.threads,
            "repeats": args.repeats,
        }
        return benchlib.run_child(Path(__file__), spec)
    finally:
        for key in VARIANTS[name]["env"]:
            os.environ.pop(key, None)
        os.environ.update(env_before)


def render(command: str, order: list[str], results: list[dict[str, Any]], note: str) -> str:
    out = [
        benchlib.header(command, note),
        "",
        "| variant | settings | step time, median (min) | time / first avx2 run |",
        "|---|---|---|---|",
    ]
    base = statistics.median(results[0]["times"])
    for name, res in zip(order, results, strict=True):
        env = VARIANTS[name]["env"]
        settings = " ".join(f"{k}={v}" for k, v in env.items()) + (
            " + NHWC conv" if VARIANTS[name].get("channels_last") else ""
        )
        ratio = statistics.median(res["times"]) / base
        out.append(
            f"| {VARIANTS[name].get('label', name)} | `{settings or '-'}` | "
            f"{benchlib.fmt_time(res['times'])} | {ratio:.2f}x |"
        )
    out += ["", "Capability each variant ran with:", ""]
    out += [
        f"- {VARIANTS[n].get('label', n)}: {r['machine']} (load at the end {r['load_end']})"
        for n, r in zip(order, results, strict=True)
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[v for v in VARIANTS if v != "avx2"],
        choices=list(VARIANTS),
        help="variants between the two baseline (avx2) runs",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=benchlib.THREADS)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 repeat: checks the script")
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/cpu_settings.md)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.smoke:
        args.repeats = 1
    command = "python benchmarks/" + " ".join(
        [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    )
    order = ["avx2", *args.variants, "avx2"]
    results = []
    for name in order:
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        results.append(run_variant(name, args))
    note = "Smoke run (tiny model): checks the script, measures nothing." if args.smoke else ""
    benchlib.write_result("cpu_settings", render(command, order, results, note), args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
