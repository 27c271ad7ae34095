"""The ZegCLIP ablation on the shapes world, measured: writes a Markdown table.

    python benchmarks/shapes_ablation.py [--seeds 0 1 2] [--rows inductive random_clip ...] [--jobs 2]
        [--out FILE] [-- extra train.py overrides, e.g. trainer.max_steps=200]

Each row trains with ``python train.py`` (the default shapes configuration plus the row's
overrides) once per seed and reads the run's ``metrics.json`` (the test of the final weights, as
every run reports): mIoU(S), mIoU(U), hIoU as mean +- standard deviation over seeds, plus wall
time per run. Rows:

* inductive: the default (frozen pretrained tiny CLIP, deep prompts, seen labels only, softmax
  cross-entropy, no seen-class calibration: see conf/experiment/shapes_inductive.yaml).
* transductive: ``python train.py setting=transductive``, the paper's schedule in one command: the
  first half of the inductive schedule, then as many self-training steps with pseudo-labels for
  unseen pixels (as many steps in all as the inductive row).
* fully: all labels (the upper bound).
* random_clip: the same with a randomly initialised CLIP (no knowledge of the class names).
* finetune_clip: no prompts; the CLIP image tower itself trains (at 0.1x the rate, 1e-4).
* no_relationship: queries from the text embedding alone (no ``[t * g, t]`` descriptor).
* focal_dice: the paper's sigmoid focal x100 + dice loss instead of softmax cross-entropy.
* calibration: the inductive checkpoints evaluated with the paper's seen-class calibration
  (seen scores - 0.1); the shapes default evaluates without it (see conf/experiment/shapes_inductive.yaml).

``--jobs N`` runs N trainings at once, each with ``cores // N`` torch threads (set through
``OMP_NUM_THREADS``); the wall times in the table are then per run under that sharing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from zegclip.common.metric_names import HEADLINE_KEYS, LABELS

ROOT = Path(__file__).resolve().parents[1]
ROWS: dict[str, list[str]] = {
    "inductive": [],
    "transductive": ["setting=transductive"],
    "fully": ["setting=fully"],
    "random_clip": ["model.clip.weights=null"],
    "finetune_clip": ["model.prompt_tokens=0", "model.ft_backbone=true", "optimizer.backbone_lr_scale=0.1"],
    "no_relationship": ["model.relationship_descriptor=false"],
    "focal_dice": ["loss.name=focal_dice"],
    "calibration": [],  # evaluation of the inductive checkpoints only
}
DEPENDENT = ("calibration",)  # needs the inductive run of the same seed
DESCRIPTIONS = {
    "inductive": "ZegCLIP, inductive (default)",
    "transductive": "transductive (one command: 50% inductive + 50% self-training steps)",
    "fully": "fully supervised",
    "random_clip": "random-init CLIP",
    "finetune_clip": "fine-tuned CLIP tower (lr x0.1), no prompts",
    "no_relationship": "no relationship descriptor",
    "focal_dice": "sigmoid focal + dice loss (the paper's)",
    "calibration": "seen-class calibration (seen scores - 0.1, as in the paper)",
}


def run(args: list[str], log: Path, threads: int | None = None) -> float:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start


def metrics(run_dir: Path) -> dict[str, float]:
    data = json.loads((run_dir / "metrics.json").read_text())
    return {k: (data[k] if data[k] is not None else float("nan")) for k in HEADLINE_KEYS}


def finished_run(run_dir: Path) -> float | None:
    """Wall seconds of a run that finished in ``run_dir`` (from its run.json), else None."""
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        return None
    if info.get("status") != "finished" or not (run_dir / "metrics.json").is_file():
        return None
    stamp = "%Y-%m-%dT%H:%M:%S%z"
    started, ended = (datetime.strptime(info[k], stamp) for k in ("started", "ended"))
    return (ended - started).total_seconds()


def train_steps(extra: list[str]) -> int:
    for item in extra:
        if item.startswith("trainer.max_steps="):
            return int(item.split("=", 1)[1])
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=extra)
    return int(cfg.trainer.max_steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once (cores are shared)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="default: logs/ablation/<start time>; an earlier sweep's folder continues it",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "shapes_ablation.md")
    parser.add_argument("extra", nargs="*", help="overrides passed to every train.py run")
    args = parser.parse_args()

    if args.work_dir is None:  # a fresh folder per sweep: run folders are never reused
        args.work_dir = ROOT / "logs" / "ablation" / time.strftime("%Y-%m-%d_%H-%M-%S")
    rows = list(args.rows)
    if any(r in rows for r in DEPENDENT) and "inductive" not in rows:
        rows.insert(0, "inductive")
    steps = train_steps(args.extra)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    results: dict[str, dict[int, dict[str, float]]] = {r: {} for r in rows}
    times: dict[str, dict[int, float]] = {r: {} for r in rows}

    lock = threading.Lock()

    def write_table() -> str:
        table = render(rows, results, times, args.seeds, args.extra, args.jobs, threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        return table

    def job(row: str, seed: int) -> None:
        run_dir = args.work_dir / row / f"seed{seed}"
        done = finished_run(run_dir)
        if done is not None:  # --work-dir of an interrupted sweep: finished runs are kept, not redone
            times[row][seed], results[row][seed] = done, metrics(run_dir)
            with lock:
                write_table()
            return
        if run_dir.exists():  # an unfinished run: kept beside, under another name, and started again
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.unfinished-{time.strftime('%H-%M-%S')}"))
        run_dir.mkdir(parents=True)  # run.json refuses a folder another run used
        common = [f"seed={seed}", f"hydra.run.dir={run_dir}", "logger=csv", *args.extra]
        inductive_dir = args.work_dir / "inductive" / f"seed{seed}"
        if row == "calibration":
            data = [o for o in args.extra if o.startswith("dataset.")]  # same test split as the inductive run
            cmd = [
                "eval.py",
                f"ckpt_path={inductive_dir / 'checkpoints' / 'last.ckpt'}",
                "evaluation.seen_bias=0.1",
                f"seed={seed}",
                f"hydra.run.dir={run_dir}",
                *data,
            ]
        elif row == "transductive":  # each stage half the inductive row's steps (the recipe's default)
            cmd = ["train.py", *ROWS[row], *common, f"trainer.max_steps={max(1, steps // 2)}"]
        else:
            cmd = ["train.py", *ROWS[row], *common]
        seconds = run(cmd, run_dir / "log.txt", threads)
        m = metrics(run_dir)
        times[row][seed], results[row][seed] = seconds, m
        with lock:  # the table so far, so that an interrupted sweep keeps what it measured
            write_table()
        print(
            f"{row:16s} seed {seed}: S {100 * m['mIoU_seen']:.1f} U {100 * m['mIoU_unseen']:.1f} "
            f"H {100 * m['hIoU']:.1f} ({seconds:.0f} s)",
            flush=True,
        )

    independent = [(r, s) for s in args.seeds for r in rows if r not in DEPENDENT]
    dependent = [(r, s) for s in args.seeds for r in rows if r in DEPENDENT]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for batch in (independent, dependent):
            for future in [pool.submit(job, r, s) for r, s in batch]:
                future.result()  # re-raises a failed run's error

    print(write_table())
    return 0


def _mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def render(rows, results, times, seeds, extra, jobs: int = 1, threads: int | None = None) -> str:
    sharing = f"{jobs} runs at once, {threads} torch thread(s) each" if jobs > 1 else "one run at a time"
    partial = any(s not in results[row] for row in rows for s in seeds)
    lines = [
        f"Shapes world (compositional vocabulary), seeds {', '.join(map(str, seeds))}; "
        f"{'PARTIAL (some runs missing); ' if partial else ''}mean ± std over seeds; "
        f"overrides: {' '.join(extra) or 'none'}; {sharing} on {os.cpu_count()} cores",
        "",
        f"| row | {' | '.join(LABELS[k] for k in HEADLINE_KEYS)} | wall time per run |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        res = [results[row][s] for s in seeds if s in results[row]]
        if not res:
            continue
        lines.append(
            f"| {DESCRIPTIONS[row]} | "
            + " | ".join(_mean_std([r[k] for r in res]) for k in HEADLINE_KEYS)
            + " | "
            f"{statistics.mean(times[row].values()):.0f} s |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
