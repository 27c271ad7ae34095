"""Every ``python train.py`` / ``eval.py`` / ``predict.py`` command the README shows works as shown.

Commands that need no download (the shapes world, the bundled model) run for real, verbatim, with
only shortening overrides appended, from a fresh working folder (so run folders resolve exactly as
for a user: no ``hydra.sweep.dir`` or path overrides). Every other documented command (real
datasets, CLIP weights, GPUs, SLURM) must at least compose, for every job of a sweep.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra_compose import compose_config

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"train.py": "train", "eval.py": "eval", "predict.py": "predict"}
SHORTEN = {
    "train": ["trainer.max_steps=4", "trainer.val_check_interval=2", "dataset.batch_size=8",
              "dataset.layout.train_size=64", "dataset.layout.val_size=16",
              "dataset.layout.test_size=16"],  # fmt: skip
    "eval": ["dataset.layout.test_size=16"],
    "predict": [],
}


def readme_commands() -> list[tuple[str, list[str]]]:
    """``(entry point, arguments)`` of every documented command, in README order."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\$\(cat [^)]*\)", "$FILE_OVERRIDES", block)  # overrides read from a file the user has
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                words = shlex.split(part)
                if len(words) >= 2 and words[0] == "python" and words[1] in ENTRY_POINTS:
                    commands.append((words[1], words[2:]))
    return commands


def placeholders_filled(args: list[str]) -> list[str]:
    """``$RUN``-style placeholders (the user's own paths) replaced by a stand-in path; overrides read
    from a file (``$(cat FILE)``) left out."""
    return [re.sub(r"\$\w+", "/path/of/the/user", a) for a in args if a != "$FILE_OVERRIDES"]


COMMANDS = readme_commands()


def test_the_readme_documents_the_main_commands() -> None:
    assert ("train.py", []) in COMMANDS  # the main job
    assert ("eval.py", []) in COMMANDS
    assert any(e == "train.py" and "-m" in a and all(x.startswith("seed=") for x in a if x != "-m") for e, a in COMMANDS)


def sweep_jobs(args: list[str]) -> list[list[str]]:
    """The override lists of every job (``-m`` with ``a=1,2`` sweeps expands to the product)."""
    args = [a for a in args if a != "-m"]
    choices = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")] if "=" in a and "," in a.split("=", 1)[1]
               and not a.split("=", 1)[1].startswith("[") else [a] for a in args]  # fmt: skip
    return [list(job) for job in itertools.product(*choices)]


def compose_job(entry: str, overrides: list[str], tmp_path: Path):
    return compose_config(ENTRY_POINTS[entry], [f"hydra.run.dir={tmp_path}", *overrides])  # the default paths


def needs_no_download(entry: str, args: list[str], tmp_path: Path) -> bool:
    if any("$" in a for a in args):  # a placeholder for the user's own path
        return False
    for job in sweep_jobs(args):
        cfg = compose_job(entry, job, tmp_path)
        data = "shapes" if entry == "predict.py" else str(cfg.get("dataset", {}).get("name", ""))
        if not data.startswith("shapes") or "slurm" in str(cfg.hydra.launcher.get("_target_", "")):
            return False
        if entry == "train.py" and (cfg.trainer.accelerator == "gpu" or cfg.get("init_from")):
            return False
        if entry == "predict.py" and (cfg.ckpt_path != "shapes" or cfg.device not in (None, "cpu")):
            return False
    return True


def make_user_images(workdir: Path, args: list[str]) -> None:
    """The user's own images that a documented ``predict.py`` command names (shapes-world pictures)."""
    from PIL import Image

    from zegclip.data.shapes import ShapesWorld

    inputs = next(a.split("=", 1)[1] for a in args if a.startswith("inputs="))
    if inputs.endswith("/"):
        paths = [f"{inputs}a.jpg", f"{inputs}b.png"]
    else:
        paths = [inputs.replace("**/", "sub/").replace("*", "img")]
    world = ShapesWorld()
    for i, rel in enumerate(paths):
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(world.sample(i)[0]).resize((160, 120)).save(path)


@pytest.mark.parametrize(("entry", "args"), COMMANDS, ids=[" ".join(["python", e, *a]) for e, a in COMMANDS])
def test_documented_command(entry: str, args: list[str], tmp_path: Path) -> None:
    for job in sweep_jobs(placeholders_filled(args)):  # every job of every documented command composes
        cfg = compose_job(entry, job, tmp_path)
        assert cfg.task_name == ENTRY_POINTS[entry]
    if not needs_no_download(entry, args, tmp_path):
        return
    workdir = tmp_path / "user"  # a fresh folder: logs go to <cwd>/logs, as for a user
    workdir.mkdir()
    if entry == "predict.py":
        make_user_images(workdir, args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    study = any(a.startswith("hparams_search=") for a in args)
    trials = ["hydra.sweeper.n_trials=2"] if study else []  # an Optuna study: two trials
    command = [sys.executable, str(REPO / entry), *args, *trials, *SHORTEN[ENTRY_POINTS[entry]]]
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    task = ENTRY_POINTS[entry]
    if study:  # the study folder (logs/train/optuna/<study>): its trials, their metrics, the report
        (folder,) = (workdir / "logs" / task / "optuna").iterdir()
        trial_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        assert [p.name for p in trial_dirs] == ["0", "1"] and (folder / "optuna.db").is_file()
        assert all((j / "metrics.json").is_file() for j in trial_dirs)
        report = (folder / "report.md").read_text()
        assert "| 0 | complete |" in report and "| 1 | complete |" in report and "**Best trial: #" in report
    elif "-m" in args:
        (sweep,) = (workdir / "logs" / task / "multiruns").iterdir()
        jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
        assert len(jobs) == len(sweep_jobs(args))
        assert all((j / "metrics.json").is_file() for j in jobs)
    else:
        (run,) = (workdir / "logs" / task / "runs").iterdir()
        assert (run / ("predictions.json" if task == "predict" else "metrics.json")).is_file()
        if "setting=transductive" in args and not any(a.startswith("init_from=") for a in args):
            check_both_stages(run)


def check_both_stages(run: Path) -> None:
    """A transductive run in one command: the inductive stage's checkpoint, then the tested final weights."""
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    inductive, transductive = metrics["stages"]
    assert (inductive["setting"], transductive["setting"]) == ("inductive", "transductive")
    assert Path(inductive["checkpoint"]).is_file()
    assert metrics["weights"]["step"] == transductive["last_step"] == 2 * inductive["last_step"]


def test_eval_prints_the_figures_the_readme_states(tmp_path: Path) -> None:
    """`python eval.py`, exactly as documented (the bundled model, the full 1,000-image test set): the
    summary line it prints is the README's, digit for digit (evaluation of fixed weights is the one
    figure that does not depend on the processor)."""
    text = (REPO / "README.md").read_text()
    stated = re.search(r"prints, on every CPU.*?```\n(mIoU_seen:[^\n]*)\n```", text, flags=re.S)
    assert stated, "the README states what `python eval.py` prints"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "eval.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = [line.strip() for line in proc.stdout.splitlines() if line.startswith("mIoU_seen:")]
    assert printed == [stated.group(1).strip()]
