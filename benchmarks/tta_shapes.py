"""Test-time augmentation on the shapes world, measured: writes a Markdown table.

    python benchmarks/tta_shapes.py [--rows default flip ...] [--out FILE] [-- extra eval.py overrides]

Each row is one ``python eval.py`` of the bundled shapes model (``zegclip.load("shapes")``, 1,000
test images) with the row's ``evaluation.*`` overrides; the table gives mIoU(S), mIoU(U), hIoU
from the run's ``metrics.json``, the wall time and the CPU time of the process (user + system,
less sensitive than wall time to other work on the machine). Rows:

* default: one scale, no flip (the paper's protocol, ``python eval.py``).
* flip: the image and its mirror image.
* scale_0.5 ... scale_1.5: one view at that scale (the model was trained at scale 1 only).
* tta: ``evaluation.scales=[0.5,0.75,1.0,1.25,1.5] evaluation.flip=true`` (10 views).
* tta_up: ``evaluation.scales=[1.0,1.25,1.5] evaluation.flip=true`` (6 views, no down-scaling).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from zegclip.common.metric_names import HEADLINE_KEYS, LABELS

ROOT = Path(__file__).resolve().parents[1]
TTA_SCALES = "[0.5,0.75,1.0,1.25,1.5]"
ROWS: dict[str, list[str]] = {
    "default": [],
    "flip": ["evaluation.flip=true"],
    "scale_0.5": ["evaluation.scales=[0.5]"],
    "scale_0.75": ["evaluation.scales=[0.75]"],
    "scale_1.25": ["evaluation.scales=[1.25]"],
    "scale_1.5": ["evaluation.scales=[1.5]"],
    "tta": [f"evaluation.scales={TTA_SCALES}", "evaluation.flip=true"],
    "tta_up": ["evaluation.scales=[1.0,1.25,1.5]", "evaluation.flip=true"],
}


def evaluate(overrides: list[str], run_dir: Path) -> tuple[dict, float, float]:
    """Run eval.py in fp32 (the same numbers on every CPU); returns (metrics.json, wall seconds, CPU
    seconds)."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "eval.py", "precision=fp32", *overrides, f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"eval.py {' '.join(overrides)} failed (exit {proc.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads((run_dir / "metrics.json").read_text()), wall, cpu


def render(results: dict[str, tuple[dict, float, float]], extra: list[str], load: str) -> str:
    lines = [
        "# Test-time augmentation on the shapes world",
        "",
        "`python benchmarks/tta_shapes.py"
        + (" -- " + " ".join(extra) if extra else "")
        + "`: the bundled shapes "
        "model (`python eval.py`), 1,000 test images, each row one `eval.py` run with the overrides shown.",
        f"Machine: {os.cpu_count()} CPU cores, shared; load average at the start / end: {load}.",
        "",
        f"| row | overrides | {' | '.join(LABELS[k] for k in HEADLINE_KEYS)} | wall time | CPU time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, (metrics, wall, cpu) in results.items():
        cells = [f"{100 * metrics[k]:.1f}" if metrics[k] is not None else "-" for k in HEADLINE_KEYS]
        overrides = " ".join(ROWS[row]) or "(none)"
        lines.append(f"| {row} | `{overrides}` | " + " | ".join(cells) + f" | {wall:.0f} s | {cpu:.0f} s |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tta_shapes.md"))
    parser.add_argument("--work", default=str(ROOT / "logs" / "benchmarks" / "tta_shapes"))
    parser.add_argument("extra", nargs="*", help="extra eval.py overrides (after --)")
    args = parser.parse_args()
    load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
    results = {}
    for row in args.rows:
        results[row] = evaluate([*ROWS[row], *args.extra], Path(args.work) / row)
        print(f"{row}: {results[row][0]['hIoU']:.3f} hIoU, {results[row][1]:.0f} s", flush=True)
    load = f"{load_start} / " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    table = render(results, args.extra, load)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
