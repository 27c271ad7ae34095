"""The reliability table: inject each fault into a real ``python train.py`` run and report the outcome.

    python benchmarks/reliability.py [--out benchmarks/results/reliability.md]

Every run is the short shapes-world recipe of ``tests/faults/scenarios.py`` (40 steps, a checkpoint
every 10, an epoch boundary at step 32, one thread). For faults after which there is something to
resume, the run is resumed exactly as the error message says (or, for SLURM, the same command is
started again in the same folder, as a requeued job is) and its final weights and test metrics are
compared with an uninterrupted run of the same seed. Then the faults at the edges: a full disk (a tmpfs
with room for one checkpoint and not two; the surviving checkpoint is resumed and compared too), a
read-only checkpoint folder (a read-only tmpfs), checkpoints a run cannot resume, user errors, and two
processes filling one text-embedding cache. The tmpfs rows need root (``mount``); elsewhere they say
"not measured". Takes a few minutes on 2 CPU cores.
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


def one_line(run: Run, work: Path, limit: int = 240) -> str:
    """The run's exit code and error line (paths under ``work`` shown as …), and whether that line is
    all there is (no traceback)."""
    lines = [
        line
        for line in run.output.splitlines()
        if re.match(r"^[A-Za-z]+(Error|Exception|Interrupted)\b", line)
    ]
    clean = len(lines) == 1 and "Traceback" not in run.output
    line = lines[-1].replace(str(work), "…") if lines else "?"
    line = line if len(line) <= limit else line[:limit] + " …"
    return f"exit {run.returncode}, {'one line' if clean else '**traceback**'}: `{line}`"


def mount_tmpfs(folder: Path, size: int, read_only: bool = False) -> str | None:
    """Mount a tmpfs of ``size`` bytes at ``folder``; the reason if it cannot (not root)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
    )
    return (
        None if proc.returncode == 0 else f"not measured: mount -t tmpfs needs root ({proc.stderr.strip()})"
    )


def edge_rows(work: Path, reference: Run) -> list[tuple[str, ...]]:
    """A full disk, a read-only folder, checkpoints a run cannot resume, user errors, one shared cache."""
    import torch

    rows: list[tuple[str, ...]] = []
    size = reference.last.stat().st_size
    disk = work / "disk"
    refused = mount_tmpfs(disk, size * 3 // 2)  # room for one checkpoint, not for two
    if refused:
        rows.append(("full disk (room for one checkpoint, not two)", refused, "", "", ""))
    else:
        try:
            full = train(disk / "run")
            saved = full.step() or 0
            left = [p.name for p in disk.rglob("*.tmp")]
            kept = work / "full-disk-last.ckpt"
            shutil.copy(full.last, kept)
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
        line = re.search(
            r"step (\d+): could not write .* it needs ([\d.]+ MB), ([\d.]+ MB) free", full.output
        )
        resumed = train(work / "full-disk-resumed", f"ckpt_path={kept}")
        rows.append(
            (
                f"full disk: a {size * 3 // 2 / 1e6:.0f} MB tmpfs, room for one "
                f"{size / 1e6:.0f} MB checkpoint",
                f"`CheckpointWriteError` at step {line.group(1) if line else '?'} (exit {full.returncode}, "
                f"one line naming the file, the {line.group(2) if line else '?'} it needs, the "
                f"{line.group(3) if line else '?'} free, the last good checkpoint); last.ckpt of step "
                f"{saved} intact, {len(left)} temporary files left",
                *resumed_row(reference, saved, resumed, int(line.group(1)) if line else saved),
            )
        )

    folder = work / "read-only"
    refused = mount_tmpfs(folder / "checkpoints", 1 << 20, read_only=True)
    if refused:
        rows.append(("checkpoint folder on a read-only filesystem", refused, "", "", ""))
    else:
        try:
            blocked = train(folder)
        finally:
            subprocess.run(["umount", "-l", str(folder / "checkpoints")], check=False)
        rows.append(
            (
                "checkpoint folder on a read-only filesystem",
                f"error at start-up, before step 1 ({one_line(blocked, work)})",
                "0",
                "n/a",
                "n/a",
            )
        )

    good = reference.last
    truncated = work / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    newer = work / "newer.ckpt"
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    ckpt["zegclip_format"] = int(ckpt.get("zegclip_format", 1)) + 1
    torch.save(ckpt, newer)
    for name, path, extra in (
        ("resume from a truncated last.ckpt", truncated, []),
        ("resume with `model.prompt_tokens=3` (checkpoint: 4)", good, ["model.prompt_tokens=3"]),
        ("resume on another dataset (`dataset=shapes_hard`)", good, ["dataset=shapes_hard"]),
        ("resume from a checkpoint of a newer format", newer, []),
    ):
        run = train(work / f"resume-{len(rows)}", f"ckpt_path={path}", *extra)
        rows.append((name, f"refused before step 1 ({one_line(run, work)})", "0", "n/a", "n/a"))

    probes = [
        ("train.py", ["seed=abc"]),
        ("train.py", ["trainer.max_steps=-5"]),
        ("train.py", [f"ckpt_path={work / 'missing.ckpt'}"]),
        ("eval.py", [f"ckpt_path={work / 'missing.ckpt'}"]),
        ("predict.py", [f"inputs={work / 'missing.jpg'}"]),
    ]
    codes, clean = [], 0
    for i, (program, args) in enumerate(probes):
        proc = subprocess.run(
            [
                sys.executable,
                program,
                *(SHORT if program == "train.py" else []),
                *args,
                f"hydra.run.dir={work / f'user-{i}'}",
            ],
            cwd=REPO,
            env=environment(),
            capture_output=True,
            text=True,
        )
        codes.append(proc.returncode)
        clean += len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stdout + proc.stderr
    rows.append(
        (
            "user errors: `seed=abc`, `trainer.max_steps=-5`, a missing `ckpt_path` (train, eval), a missing "
            "`inputs` (predict)",
            f"exit codes {codes}; {clean} of {len(probes)} are one line without a traceback",
            "0",
            "n/a",
            "n/a",
        )
    )

    cache, go = work / "text-cache", work / "go"
    worker = REPO / "tests" / "faults" / "text_cache_worker.py"
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(cache), str(go), "12"],
            cwd=REPO,
            env=environment(),
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    while len(list(work.glob("ready-*"))) < 2 and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.touch()
    codes = [p.wait() for p in procs]
    files = list(cache.glob("*"))
    complete = sum(1 for f in files if f.suffix == ".pt" and torch.load(f, weights_only=True).shape[0] == 3)
    rows.append(
        (
            "two processes filling one text-embedding cache at once",
            f"exit codes {codes}; {complete} of "
            f"{len(files)} files complete, "
            f"{sum(f.name.endswith('.tmp') for f in files)} temporary files left",
            "0",
            "n/a",
            "n/a",
        )
    )
    return rows


def main() -> None:
    """Run the scenarios and write the table (long only because it lists the scenarios in table order)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
        rows.append(
            (
                "`kill -9` at step 14 (mid-epoch)",
                f"killed (exit {killed.returncode}); last.ckpt of step {killed.step()} intact",
                *resumed_row(reference, killed.step() or 0, resumed, 14),
            )
        )

        for name, signum in (("SIGTERM", signal.SIGTERM), ("SIGINT (Ctrl+C)", signal.SIGINT)):
            stopped = signal_at(work / name.split()[0], signum, 13)
            step = stopped.step() or 0
            resumed = train(work / f"{name.split()[0]}-resumed", f"ckpt_path={stopped.last}")
            rows.append(
                (
                    f"{name} at step 13",
                    f"saved step {step}, exit {stopped.returncode}, message says how to resume",
                    *resumed_row(reference, step, resumed, step),
                )
            )

        bin_dir, record = fake_scontrol(work / "slurm")
        env = environment(SLURM_JOB_ID="4242", PATH=f"{bin_dir}:{environment()['PATH']}")
        job = work / "slurm" / "job"
        first = signal_at(job, signal.SIGUSR2, 12, env=env)
        step = first.step() or 0
        requeue = record.read_text().strip() if record.is_file() else "(not called)"
        second = train(job, env=env)
        rows.append(
            (
                "SLURM pre-timeout signal (SIGUSR2) at step 12",
                f"saved step {step}, `scontrol {requeue}`, exit {first.returncode}; "
                "the requeued job resumed itself",
                *resumed_row(reference, step, second, step),
            )
        )

        nan = train(
            work / "nan", "optimizer.lr=1e4", "optimizer.warmup_steps=0", "checkpoint_every_n_steps=1"
        )
        found = re.search(r"loss is \S+ at step (\d+)", nan.output)
        rows.append(
            (
                "NaN loss (`optimizer.lr=1e4`)",
                f"stopped at step {found.group(1) if found else '?'} (exit "
                f"{nan.returncode}), names the last good checkpoint (step {nan.step()}), no NaN saved",
                "0",
                "n/a (diverged)",
                "n/a (no test)",
            )
        )

        folder = work / "unwritable"
        folder.mkdir()
        (folder / "checkpoints").write_text("")
        blocked = train(folder)
        rows.append(
            (
                "checkpoint folder not writable",
                f"error at start-up (exit {blocked.returncode}), before step 1",
                "0",
                "n/a",
                "n/a",
            )
        )

        command = [
            sys.executable,
            "train.py",
            *SHORT,
            "trainer.max_steps=2",
            "test_after_training=false",
            f"paths.log_dir={work / 'same-second'}",
        ]
        procs = [
            subprocess.Popen(
                [*command, f"seed={s}"],
                cwd=REPO,
                env=environment(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for s in (1, 2)
        ]
        codes = [p.wait() for p in procs]
        folders = list((work / "same-second" / "train" / "runs").iterdir())
        seeds = sorted(
            json.loads((f / "run.json").read_text())["command"].split("seed=")[-1] for f in folders
        )
        rows.append(
            (
                "two runs started in the same second",
                f"{len(folders)} run folders (seeds {', '.join(seeds)}), exit codes {codes}",
                "0",
                "n/a",
                "n/a",
            )
        )
        rows += edge_rows(work, reference)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    header = (
        "fault",
        "outcome",
        "steps of work lost",
        "final weights = uninterrupted run",
        "test metrics = uninterrupted run",
    )
    lines = [
        f"Reliability of `python train.py` ({STEPS}-step shapes run, checkpoint every 10 steps; "
        f"`python benchmarks/reliability.py`, {time.time() - started:.0f} s)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
