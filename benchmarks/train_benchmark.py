"""Training-step speed and memory on CPU: zegclip against the FLOP floor and the official code.

    python benchmarks/train_benchmark.py [--scales voc coco] [--repeats 3] [--rows ...]
        [--capability native|avx2|avx512] [--out FILE]

One training step = forward of B=2 random 512x512 crops, the sigmoid focal + dice loss on the
seen classes (inductive targets), backward (no optimizer step). Rows per scale:

* official: the official implementation (``../shared/official_harness``, needs ``ZEGCLIP_REF``;
  skipped with a note otherwise), ``forward_train`` + backward of its summed losses, text
  embeddings precomputed as its configs do;
* zegclip fp32, zegclip under bf16 autocast (what ``trainer.precision=bf16-mixed`` wraps the
  step in), and zegclip fp32 with ``model.grad_checkpointing=true``.

Both implementations run on the same random ViT-B/16 weights (an official-format checkpoint
loaded with ``zegclip.load``), dropout off in both. VOC scale: 10 prompt tokens, 15 seen of 20
classes; COCO-Stuff scale: 100 prompt tokens, 156 seen of 171.

Timing: per scale one Python process holds both models and runs ``--repeats`` rounds after a
warm-up, each round one step of every row in turn (so a change of machine load hits all rows
alike); median and min per row. Memory: each row again alone in a fresh process, warm-up step,
then one step whose peak resident set is read (``VmHWM`` after resetting it with
``/proc/self/clear_refs``; "growth" is that peak minus the resident set just before the step).
The FLOP floor is the step's GEMM FLOPs (``benchlib.zegclip_step_flops``) divided by the GEMM
rate measured between the rounds (``F.linear`` at the ViT MLP shape, fp32 or bf16). Timings on a
shared machine are noisy: the load average is recorded. ``--capability avx2`` (or ``avx512``)
measures as on a CPU without AVX-512 (or without bf16 instructions): see ``benchlib.CAPABILITIES``;
bf16 rows are then marked as emulated.
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

import torch

import benchlib

SCALES: dict[str, dict[str, Any]] = {
    "voc": {"dataset": "voc", "prompts": 10, "crop": 512, "batch": 2},
    "coco": {"dataset": "coco", "prompts": 100, "crop": 512, "batch": 2},
    # a tiny model (tests/tiny_model.py's architecture) for --smoke: checks the script, measures nothing
    "smoke": {"dataset": "voc", "prompts": 3, "crop": 64, "batch": 2, "classes": 6, "unseen": [4, 5]},
}
TINY_ARCH = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 3, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
ROWS = [  # (implementation, precision, activation checkpointing)
    ("official", "fp32", False),
    ("zegclip", "fp32", False),
    ("zegclip", "bf16-mixed", False),
    ("zegclip", "fp32", True),
]
ROW_NAMES = dict(zip(("official", "fp32", "bf16-mixed", "grad-checkpointing"), ROWS, strict=True))


def vocabulary(scale: dict[str, Any]) -> tuple[list[str], list[int]]:
    """Class names and seen class ids of the scale's dataset (from ``conf/dataset``)."""
    from omegaconf import OmegaConf

    from zegclip.data.classes import class_names

    data = OmegaConf.load(benchlib.ROOT / "conf" / "dataset" / f"{scale['dataset']}.yaml").dataset
    names = class_names(scale["dataset"])[: scale.get("classes")]
    unseen = set(scale.get("unseen", data.unseen))
    return names, [i for i in range(len(names)) if i not in unseen]


def make_labels(batch: int, size: int, seen: list[int], seed: int = 0) -> torch.Tensor:
    """Dataset class ids in blobs (8 seen classes per image), 5% ignore pixels and a padded border.

    Ignore is the official 255 (the official rows read these labels as they are); our rows map
    every id outside the vocabulary, 255 included, to ignore through ``inductive_targets``."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.empty(batch, size, size, dtype=torch.long)
    seen_t = torch.tensor(seen)
    for i in range(batch):
        chosen = seen_t[torch.randperm(len(seen), generator=gen)[:8]]
        coarse = chosen[torch.randint(0, len(chosen), (1, 1, 12, 12), generator=gen)].float()
        labels[i] = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")[0, 0].long()
    labels[torch.rand(batch, size, size, generator=gen) < 0.05] = 255
    labels[:, :, -size // 20 :] = 255
    return labels


# ----------------------------------------------------------------------------- worker


def build_zegclip(spec: dict[str, Any], scale: dict[str, Any]):
    import zegclip
    from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig

    if spec.get("checkpoint"):
        model = zegclip.load(spec["checkpoint"], precision="fp32")  # bf16-mixed rows add their own autocast
    else:
        torch.manual_seed(0)
        clip = CLIPConfig(arch=TINY_ARCH) if spec["scale"] == "smoke" else CLIPConfig(model_name="ViT-B-16")
        heads = 4 if spec["scale"] == "smoke" else 8
        model = ZegCLIP(
            ZegCLIPConfig(
                clip=clip, image_size=scale["crop"], prompt_tokens=scale["prompts"], decoder_heads=heads
            )
        )
    model.train()
    for module in model.modules():  # dropout off, as in the official rows
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    return model


class Steps:
    """The rows' training steps on one batch; models are built on first use."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.scale = SCALES[spec["scale"]]
        self.names, self.seen = vocabulary(self.scale)
        batch, size = self.scale["batch"], self.scale["crop"]
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch, 3, size, size, generator=gen)
        self.labels = make_labels(batch, size, self.seen)
        self.model: Any = None
        self.ref: Any = None
        self.text: torch.Tensor | None = None

    def zegclip(self, precision: str, checkpointing: bool):
        from zegclip.model.labels import inductive_targets, seen_lookup
        from zegclip.model.loss import FocalDiceLoss

        if self.model is None:
            self.model = build_zegclip(self.spec, self.scale)
            self.text = self.model.class_embeddings(self.names)
        model, text = self.model, self.text[self.seen]
        targets = inductive_targets(self.labels, seen_lookup(len(self.names), self.seen))
        criterion, bf16 = FocalDiceLoss(), precision == "bf16-mixed"

        def step() -> None:
            model.image_encoder.grad_checkpointing = checkpointing
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(self.images, text)
                loss = criterion(out.logits_for(targets.shape[-2:]), targets)
            loss.total.backward()
            model.zero_grad(set_to_none=True)

        return step

    def official(self):
        if self.ref is None:
            harness, why = benchlib.official_harness()
            assert harness is not None, why
            cfg = official_config(harness, self.spec, self.scale, self.names, self.seen)
            self.ref = harness.build_reference(cfg)
            harness.load_weights(
                self.ref, torch.load(self.spec["checkpoint"], weights_only=True)["state_dict"]
            )
            # our embeddings of the same text tower, precomputed as the official configs do
            self.ref.load_text_embedding = str(Path(self.spec["tmp"]) / f"text_{self.spec['scale']}.npy")
            self.ref.train()
            harness.disable_dropout(self.ref)
        ref, metas = self.ref, [{}] * self.scale["batch"]

        def step() -> None:
            losses = ref.forward_train(self.images, metas, self.labels[:, None])
            sum(v for k, v in losses.items() if "loss" in k).backward()
            ref.zero_grad(set_to_none=True)

        return step

    def step(self, impl: str, precision: str, checkpointing: bool):
        return self.official() if impl == "official" else self.zegclip(precision, checkpointing)


def gemm_rates() -> dict[str, float]:
    return {"fp32": benchlib.gemm_rate(torch.float32), "bf16": benchlib.gemm_rate(torch.bfloat16)}


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One row alone in this process: warm-up step, then the peak resident set of one step."""
    step = Steps(spec).step(*spec["row"])
    step()
    rss_before = benchlib.reset_peak_rss()
    step()
    return {"rss_before": rss_before, "peak": benchlib.peak_rss()}


def timing_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """All rows of a scale in this process, interleaved: every round runs each row once, so that
    a change of machine load hits all rows alike."""
    steps = Steps(spec)
    rows = [tuple(r) for r in spec["rows"]]
    fns = {row: steps.step(*row) for row in rows}
    for fn in fns.values():
        fn()  # warm-up
    times: dict[tuple, list[float]] = {row: [] for row in rows}
    rates = [gemm_rates()]
    for _ in range(spec["repeats"]):
        for row in rows:
            times[row] += benchlib.timed(fns[row], repeats=1, warmup=0)
        rates.append(gemm_rates())
    scale = steps.scale
    flops = benchlib.zegclip_step_flops(
        scale["batch"], scale["crop"] // 16, scale["prompts"], len(steps.seen), **_dims(spec)
    )
    return {
        "times": [[list(row), t] for row, t in times.items()],
        "rates": {k: [r[k] for r in rates] for k in ("fp32", "bf16")},
        "flops": flops,
        "load_end": benchlib.load_average(),
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    benchlib.set_threads(spec["threads"])
    return memory_worker(spec) if spec["kind"] == "memory" else timing_worker(spec)


def _dims(spec: dict[str, Any]) -> dict[str, int]:
    return {"embed": 32, "width": 64} if spec["scale"] == "smoke" else {}


def official_config(
    harness: Any, spec: dict[str, Any], scale: dict[str, Any], names: list[str], seen: list[int]
):
    if spec["scale"] == "smoke":
        cfg = harness.tiny_cfg()
        cfg.update(
            class_names=names, seen_idx=seen, all_idx=list(range(len(names))), num_tokens=scale["prompts"]
        )
        return cfg
    return benchlib.official_config(harness, names, seen, scale["prompts"])


# ----------------------------------------------------------------------------- driver


def make_checkpoint(harness: Any, scale_name: str, path: Path) -> None:
    """An official-format checkpoint of random official weights (both implementations load it),
    and our text embeddings of its text tower beside it (``text_<scale>.npy``)."""
    scale = SCALES[scale_name]
    names, seen = vocabulary(scale)
    spec = {"scale": scale_name}
    torch.manual_seed(0)
    cfg = official_config(harness, spec, scale, names, seen)
    ref = harness.build_reference(cfg)
    torch.save(harness.make_checkpoint(ref, cfg, f"benchmark_{scale_name}", 0), path)
    del ref
    import numpy as np

    import zegclip

    text = zegclip.load(path, precision="fp32").class_embeddings(
        names
    )  # for the official rows (load_text_embedding)
    np.save(path.parent / f"text_{scale_name}.npy", text.numpy())


def render(
    command: str, results: dict[str, dict[str, Any]], scales: list[str], note: str, smoke: bool
) -> str:
    out = [benchlib.header(command, note)]
    out.append(
        "| workload | implementation | precision | step time, median (min) | FLOP floor | time / floor "
        "| time / official | peak RSS (growth in the step) |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for scale in scales:
        res = results[scale]
        rate = {k: statistics.median(v) for k, v in res["rates"].items()}
        official = res["times"].get(("official", "fp32", False))
        for row in ROWS:
            t = res["times"].get(row)
            if t is None:
                continue
            impl, precision, ckpt = row
            med = statistics.median(t)
            r = rate["bf16" if precision == "bf16-mixed" else "fp32"]
            floor = res["flops"] / (r * 1e9)
            vs = f"{med / statistics.median(official):.2f}x" if official else "-"
            mem = res["memory"].get(tuple(row)) or res["memory"].get(row)
            name = impl + (" + grad checkpointing" if ckpt else "")
            rss = (
                "not measured (smoke run)"
                if mem is None
                else f"{benchlib.gib(mem['peak'])} ({benchlib.gib(mem['peak'] - mem['rss_before'])})"
            )
            out.append(
                f"| {scale} (B=2) | {name} | {benchlib.precision_label(precision)} | {benchlib.fmt_time(t)} "
                f"| {floor:.2f} s ({res['flops'] / 1e9:.0f} GFLOP at {r:.0f} GFLOP/s) | "
                f"{med / floor:.2f}x | {vs} | {rss} |"
            )
    out.append("")
    for scale in scales:
        res = results[scale]
        rates = ", ".join(f"{k} {min(v):.0f}-{max(v):.0f} GFLOP/s" for k, v in res["rates"].items())
        out.append(
            f"{scale}: GEMM rate during the timed rounds {rates}; load average at the end {res['load_end']}."
        )
    if not smoke:
        out += ["", targets(results, scales)]
    return "\n".join(out) + "\n"


def targets(results: dict[str, dict[str, Any]], scales: list[str]) -> str:
    """The issue's targets, computed from the rows above."""
    lines = [
        "Targets (ratios of medians; in brackets the ratio of the fastest runs, closer to what a quiet "
        "machine gives when the load changed during the rounds):",
        "",
        "| target | measured | met (medians) |",
        "|---|---|---|",
    ]

    def med(scale: str, *row: Any) -> tuple[float, float] | None:
        t = results[scale]["times"].get(row)
        return (statistics.median(t), min(t)) if t else None

    def check(label: str, num: Any, den: Any, limit: float | None, what: str = "time") -> None:
        if num is None or den is None:
            lines.append(f"| {label} | not measured | - |")
            return
        if isinstance(num, tuple):
            ratio = num[0] / den[0]
            text = f"{ratio:.2f}x ({num[1] / den[1]:.2f}x) ({what})"
        else:
            ratio = num / den
            text = f"{ratio:.2f}x ({what})"
        met = "-" if limit is None else ("yes" if ratio <= limit else "**no**")
        lines.append(f"| {label} | {text} | {met} |")

    for scale in scales:
        memory = results[scale]["memory"]
        fp32 = med(scale, "zegclip", "fp32", False)
        limit = 0.85 if scale == "voc" else 0.45
        check(
            f"{scale}: zegclip fp32 step <= {limit}x official",
            fp32,
            med(scale, "official", "fp32", False),
            limit,
        )
        if scale == "coco":
            ours, off = memory.get(("zegclip", "fp32", False)), memory.get(("official", "fp32", False))
            check(
                "coco: zegclip peak RSS <= 0.45x official",
                ours and ours["peak"],
                off and off["peak"],
                0.45,
                "peak RSS",
            )
        bf16 = med(scale, "zegclip", "bf16-mixed", False)
        if benchlib.machine()["native_bf16"]:
            limit = 0.55 if scale == "voc" else 0.6
            check(f"{scale}: bf16-mixed step <= {limit}x zegclip fp32", bf16, fp32, limit)
        else:  # trainer.precision=auto picks 32-true here
            check(f"{scale}: bf16-mixed step (emulated: no native bf16) / zegclip fp32", bf16, fp32, None)
        check(f"{scale}: grad checkpointing, time cost", med(scale, "zegclip", "fp32", True), fp32, None)
        with_ck, without = memory.get(("zegclip", "fp32", True)), memory.get(("zegclip", "fp32", False))
        if with_ck and without:
            growth = [m["peak"] - m["rss_before"] for m in (with_ck, without)]
            lines.append(
                f"| {scale}: grad checkpointing, memory | growth in the step {benchlib.gib(growth[0])} "
                f"instead of {benchlib.gib(growth[1])}; peak RSS {benchlib.gib(with_ck['peak'])} instead of "
                f"{benchlib.gib(without['peak'])} | - |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["voc", "coco"], choices=list(SCALES))
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row (after warm-up)")
    parser.add_argument("--threads", type=int, default=benchlib.THREADS)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny model, 1 repeat, memory of the first row only: checks the script",
    )
    parser.add_argument(
        "--out", default=None, help="result file (default benchmarks/results/train_benchmark.md)"
    )
    parser.add_argument(
        "--rows", nargs="+", default=list(ROW_NAMES), choices=list(ROW_NAMES), help="rows to measure"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    benchlib.add_capability_option(parser)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    code = benchlib.relaunch_with_capability(args.capability, sys.argv[1:] if argv is None else argv)
    if code is not None:
        return code
    if args.smoke:
        args.scales, args.repeats = ["smoke"], 1
    benchlib.set_threads(args.threads)
    command = "python benchmarks/" + " ".join(
        [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    )
    harness, note = benchlib.official_harness()
    rows = [ROW_NAMES[r] for r in args.rows if ROW_NAMES[r][0] != "official" or harness is not None]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            checkpoint = None
            if harness is not None:
                checkpoint = str(Path(tmp) / f"official_{scale}.pth")
                make_checkpoint(harness, scale, Path(checkpoint))
            base = {"scale": scale, "threads": args.threads, "checkpoint": checkpoint, "tmp": tmp}
            print(f"[{scale}] timing, rows interleaved ...", file=sys.stderr, flush=True)
            timing = benchlib.run_child(
                Path(__file__), {**base, "kind": "timing", "rows": rows, "repeats": args.repeats}
            )
            memory = {}
            for row in rows[:1] if args.smoke else rows:  # the smoke run checks the memory path once
                print(f"[{scale}] memory of {row} ...", file=sys.stderr, flush=True)
                memory[row] = benchlib.run_child(Path(__file__), {**base, "kind": "memory", "row": row})
            results[scale] = {**timing, "times": {tuple(r): t for r, t in timing["times"]}, "memory": memory}
    note = "\n".join(
        filter(
            None, [note, "Smoke run (tiny model): checks the script, measures nothing." if args.smoke else ""]
        )
    )
    text = render(command, results, args.scales, note, args.smoke)
    benchlib.write_result(benchlib.result_name("train_benchmark", args.capability), text, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
