"""The reliability table: inject each fault into a real ``python train.py`` run and report the outcome.

    python benchmarks/reliability.py [--out benchmarks/results/reliability.md]

Every run is the short shapes-world recipe of ``tests/faults/scenarios.py`` (40 steps, a checkpoint
every 10, an epoch boundary at step 32, one thread). For faults after which there is something to
resume, the run is resumed exactly as the error message says (or, for SLURM, the same command is
started again in the same folder, as a requeued job is) and its final weights and test metrics are
compared with an uninterrupted run of the same seed. Takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "faults"))

from scenarios import (  # noqa: E402
    SHORT,
    STEPS,
    Run,
    environment,
    fake_scontrol,
    same_metrics,
    same_weights,
    signal_at,
    train,
)


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def resumed_row(reference: Run, saved: int, resumed: Run, fault_step: int) -> tuple[str, str, str]:
    lost = f"{max(fault_step - saved, 0)} (resumed at step {saved})"
    equal = yes(resumed.returncode == 0 and same_weights(resumed.weights(), reference.weights()))
    metrics = yes(same_metrics(resumed.metrics(), reference.metrics()))
    return lost, equal, metrics


def main() -> None:
    """Run the scenarios and write the table (long only because it lists the scenarios in table order)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reliability.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zegclip-faults-"))
    rows: list[tuple[str, ...]] = []
    started = time.time()
    try:
        reference = train(work / "reference")
        assert reference.returncode == 0, reference.output[-2000:]

        killed = signal_at(work / "killed", signal.SIGKILL, 14)
        resumed = train(work / "killed-resumed", f"ckpt_path={killed.last}")
        rows.append(("`kill -9` at step 14 (mid-epoch)", f"killed (exit {killed.returncode}); last.ckpt of step "
                     f"{killed.step()} intact", *resumed_row(reference, killed.step() or 0, resumed, 14)))  # fmt: skip

        for name, signum in (("SIGTERM", signal.SIGTERM), ("SIGINT (Ctrl+C)", signal.SIGINT)):
            stopped = signal_at(work / name.split()[0], signum, 13)
            step = stopped.step() or 0
            resumed = train(work / f"{name.split()[0]}-resumed", f"ckpt_path={stopped.last}")
            rows.append((f"{name} at step 13", f"saved step {step}, exit {stopped.returncode}, message says how to resume",
                         *resumed_row(reference, step, resumed, step)))  # fmt: skip

        bin_dir, record = fake_scontrol(work / "slurm")
        env = environment(SLURM_JOB_ID="4242", PATH=f"{bin_dir}:{environment()['PATH']}")
        job = work / "slurm" / "job"
        first = signal_at(job, signal.SIGUSR2, 12, env=env)
        step = first.step() or 0
        requeue = record.read_text().strip() if record.is_file() else "(not called)"
        second = train(job, env=env)
        rows.append(("SLURM pre-timeout signal (SIGUSR2) at step 12",
                     f"saved step {step}, `scontrol {requeue}`, exit {first.returncode}; the requeued job resumed itself",
                     *resumed_row(reference, step, second, step)))  # fmt: skip

        nan = train(work / "nan", "optimizer.lr=1e4", "optimizer.warmup_steps=0", "checkpoint_every_n_steps=1")
        found = re.search(r"loss is \S+ at step (\d+)", nan.output)
        rows.append(("NaN loss (`optimizer.lr=1e4`)", f"stopped at step {found.group(1) if found else '?'} (exit "
                     f"{nan.returncode}), names the last good checkpoint (step {nan.step()}), no NaN saved",
                     "0", "n/a (diverged)", "n/a (no test)"))  # fmt: skip

        folder = work / "unwritable"
        folder.mkdir()
        (folder / "checkpoints").write_text("")
        blocked = train(folder)
        rows.append(("checkpoint folder not writable", f"error at start-up (exit {blocked.returncode}), before step 1",
                     "0", "n/a", "n/a"))  # fmt: skip

        command = [sys.executable, "train.py", *SHORT, "trainer.max_steps=2", "test_after_training=false",
                   f"paths.log_dir={work / 'same-second'}"]  # fmt: skip
        procs = [subprocess.Popen([*command, f"seed={s}"], cwd=REPO, env=environment(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for s in (1, 2)]  # fmt: skip
        codes = [p.wait() for p in procs]
        folders = list((work / "same-second" / "train" / "runs").iterdir())
        seeds = sorted(json.loads((f / "run.json").read_text())["command"].split("seed=")[-1] for f in folders)
        rows.append(("two runs started in the same second", f"{len(folders)} run folders (seeds {', '.join(seeds)}), "
                     f"exit codes {codes}", "0", "n/a", "n/a"))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    header = ("fault", "outcome", "steps of work lost", "final weights = uninterrupted run", "test metrics = uninterrupted run")
    lines = [f"Reliability of `python train.py` ({STEPS}-step shapes run, checkpoint every 10 steps; "
             f"`python benchmarks/reliability.py`, {time.time() - started:.0f} s)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
