"""Every command the README shows works as shown, and prints and writes what it says.

Commands that need no download (the shapes world, the bundled model) run for real, verbatim, from a
fresh working folder (so run folders resolve exactly as for a user: no ``hydra.sweep.dir`` or path
overrides), each once per session (``documented``: tests share the runs). Training commands get
shortening overrides appended (``SHORTEN``: 4 steps on 64 images, 16 test images; an Optuna study two
trials), so their numbers are checked against their own files (CSV log, metrics.json, the sweep's
jobs), their console output against the README's format; ``python eval.py`` and the TTA table's
flip row run unshortened and print the README's numbers digit for digit. Slow (``-m slow``): the
multi-scale TTA rows, and ``python train.py`` as written within the README's seed spread. Every
other documented command (real datasets, CLIP weights, GPUs, SLURM) must at least compose, for
every job of a sweep.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra_compose import compose_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ENTRY_POINTS = {"train.py": "train", "eval.py": "eval", "predict.py": "predict"}
SHORTEN = {
    "train": [
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "dataset.batch_size=8",
        "dataset.layout.train_size=64",
        "dataset.layout.val_size=16",
        "dataset.layout.test_size=16",
    ],
    "eval": ["dataset.layout.test_size=16"],
    "predict": [],
}


def readme_commands() -> list[tuple[str, list[str]]]:
    """``(entry point, arguments)`` of every documented command, in README order. Overrides read from
    a file (``$(cat FILE)``) become one argument ``@overrides-file=FILE``."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\$\(cat ([^)]*)\)", r"@overrides-file=\1", block)
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                words = shlex.split(part)
                if len(words) >= 2 and words[0] == "python" and words[1] in ENTRY_POINTS:
                    commands.append((words[1], words[2:]))
    return commands


def placeholders_filled(args: list[str]) -> list[str]:
    """``$RUN``-style placeholders (the user's own paths) replaced by a stand-in path; overrides read
    from a file left out."""
    return [re.sub(r"\$\w+", "/path/of/the/user", a) for a in args if not a.startswith(FROM_FILE)]


FROM_FILE = "@overrides-file="
COMMANDS = readme_commands()


def test_the_readme_documents_the_main_commands() -> None:
    assert ("train.py", []) in COMMANDS  # the main job
    assert ("eval.py", []) in COMMANDS
    assert any(
        e == "train.py" and "-m" in a and all(x.startswith("seed=") for x in a if x != "-m")
        for e, a in COMMANDS
    )


def sweep_jobs(args: list[str]) -> list[list[str]]:
    """The override lists of every job (``-m`` with ``a=1,2`` sweeps expands to the product)."""
    args = [a for a in args if a != "-m"]
    choices = [
        [f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")]
        if "=" in a and "," in a.split("=", 1)[1] and not a.split("=", 1)[1].startswith("[")
        else [a]
        for a in args
    ]
    return [list(job) for job in itertools.product(*choices)]


def compose_job(entry: str, overrides: list[str], tmp_path: Path):
    return compose_config(ENTRY_POINTS[entry], [f"hydra.run.dir={tmp_path}", *overrides])  # the default paths


STUDY = "train.py -m hparams_search=shapes_optuna"  # writes logs/train/optuna/shapes_inductive/


def needs_no_download(entry: str, args: list[str], tmp_path: Path) -> bool:
    if any("$" in a for a in args):  # a placeholder for the user's own path
        return False
    if any(
        a.startswith(FROM_FILE) and not a.startswith(f"{FROM_FILE}logs/train/optuna/shapes_") for a in args
    ):
        return False  # overrides from a file only the shapes study (a documented command) writes
    for job in sweep_jobs(placeholders_filled(args)):
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


@dataclass
class Done:
    """A documented command, run from its own working folder (a user's fresh folder)."""

    command: str  # as the README writes it, e.g. "train.py -m seed=0,1,2"
    workdir: Path
    stdout: str

    def folders(self, kind: str, task: str = "train") -> list[Path]:
        """The run / sweep folders under ``logs/<task>/<kind>`` (runs, multiruns, optuna)."""
        return sorted(p for p in (self.workdir / "logs" / task / kind).iterdir() if p.is_dir())


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}


def run(command: list[str], workdir: Path, timeout: float = 900) -> str:
    proc = subprocess.run(
        command, cwd=workdir, env=environment(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


class DocumentedRuns:
    """Each documented command that needs no download, run once per session (tests share them)."""

    def __init__(self, root: Path) -> None:
        self.root, self.done = root, {}

    def get(self, entry: str, args: list[str]) -> Done:
        key = " ".join([entry, *args])
        if key not in self.done:
            self.done[key] = self._run(key, entry, args)
        return self.done[key]

    def _run(self, key: str, entry: str, args: list[str]) -> Done:
        if any(a.startswith(FROM_FILE) for a in args):  # `$(cat FILE)`: the study's folder, the file's words
            workdir = self.get(*_split(STUDY)).workdir
            args = [
                w
                for a in args
                for w in (
                    shlex.split((workdir / a[len(FROM_FILE) :]).read_text())
                    if a.startswith(FROM_FILE)
                    else [a]
                )
            ]
        else:
            workdir = self.root / f"user{len(self.done)}"  # a fresh folder: logs go to <cwd>/logs
            workdir.mkdir()
        if entry == "predict.py":
            make_user_images(workdir, args)
        study = any(a.startswith("hparams_search=") for a in args)
        trials = ["hydra.sweeper.n_trials=2"] if study else []  # an Optuna study: two trials
        as_written = key in ("eval.py", "eval.py precision=fp32")  # the README's figures: the full test set
        shorten = [] if as_written else SHORTEN[ENTRY_POINTS[entry]]
        stdout = run([sys.executable, str(REPO / entry), *args, *trials, *shorten], workdir)
        return Done(key, workdir, stdout)


def _split(command: str) -> tuple[str, list[str]]:
    entry, *args = command.split()
    return entry, args


@pytest.fixture(scope="session")
def documented(tmp_path_factory: pytest.TempPathFactory) -> DocumentedRuns:
    return DocumentedRuns(tmp_path_factory.mktemp("readme"))


@pytest.mark.parametrize(("entry", "args"), COMMANDS, ids=[" ".join(["python", e, *a]) for e, a in COMMANDS])
def test_documented_command(entry: str, args: list[str], tmp_path: Path, documented: DocumentedRuns) -> None:
    for job in sweep_jobs(placeholders_filled(args)):  # every job of every documented command composes
        cfg = compose_job(entry, job, tmp_path)
        assert cfg.task_name == ENTRY_POINTS[entry]
    if not needs_no_download(entry, args, tmp_path):
        return
    key = " ".join([entry, *args])
    assert key in CHECKS, f"`python {key}` needs no download: run it here and check what it prints and writes"
    CHECKS[key](documented.get(entry, args), documented)


# -- what each command prints and writes -----------------------------------------------------------------


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def readme_block(after: str) -> list[str]:
    """The lines of the first unlabelled code block after the text ``after``."""
    text = README.read_text()
    block = re.search(re.escape(after) + r".*?```\n(.*?)```", text, flags=re.S)
    assert block, f"the README shows the output after {after!r}"
    return block.group(1).splitlines()


README_OUTPUT = readme_block("At the end it prints")  # what `python train.py` prints
README_SUMMARY = next(line for line in README_OUTPUT if line.startswith("mIoU_seen:"))
SUMMARY_KEYS = re.findall(r"(\w+): ", README_SUMMARY)


def shape(line: str) -> str:
    """A console line with its numbers replaced: what the README and a shortened run have in common."""
    return re.sub(r"\d+(\.\d+)?", "N", line)


UNSEEN = {"red circle", "green square", "blue triangle", "yellow star"}  # the shapes world's


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def check_test_output(
    stdout: str, run_dir: Path, workdir: Path, roles: set[str] = UNSEEN, role: str = "unseen"
) -> dict[str, Any]:
    """The per-class table (``roles``: the classes of that ``role``, the others seen), the summary
    line and the `tested:` / `metrics:` lines of a test, as the README shows them, carry
    metrics.json's numbers; returns metrics.json."""
    metrics = read_json(run_dir / "metrics.json")
    lines = [line.rstrip() for line in stdout.splitlines()]
    summary = "  ".join(f"{k}: {percent(metrics[k])}" for k in SUMMARY_KEYS)
    assert shape(summary) == shape(README_SUMMARY) and summary in lines
    title = next(line for line in README_OUTPUT if "IoU per class" in line)
    assert title.replace("shapes (inductive)", f"{metrics['dataset']} ({metrics['setting']})") in lines
    rows = {
        cells[1]: (cells[2], cells[3])
        for line in lines
        if len(cells := [c.strip() for c in line.split("│")]) == 5 and cells[1] in metrics["IoU_per_class"]
    }
    assert {name: iou for name, (_, iou) in rows.items()} == {
        n: percent(v) for n, v in metrics["IoU_per_class"].items()
    }
    assert {n: r for n, (r, _) in rows.items()} == {
        n: role if n in roles else "seen" for n in metrics["IoU_per_class"]
    }
    weights = metrics["weights"]
    assert f"tested: {weights['checkpoint']} ({weights['selection']}, step {weights['step']})" in lines
    if weights["checkpoint"] != "shapes":  # a training run: its own final weights, as the README shows
        tested = next(line for line in README_OUTPUT if line.startswith("tested: "))
        expected = tested.replace("logs/", f"{workdir}/logs/", 1).replace("<time>_<id>", run_dir.name)
        expected = re.sub(r"step \d+\)$", f"step {weights['step']})", expected)
        assert weights["checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt")
        assert expected in lines, expected  # the README abbreviates the run folder (relative, <time>_<id>)
    assert f"metrics: {run_dir / 'metrics.json'}" in lines
    return metrics


def check_validation_lines(stdout: str, run_dir: Path, steps: list[int]) -> None:
    """One console line per validation, as the README shows it, with the CSV log's numbers."""
    readme = next(line for line in README_OUTPUT if line.startswith("validation at step"))
    printed = [
        re.sub(r" \((inductive|transductive) stage\)", "", line.strip())
        for line in stdout.splitlines()
        if line.startswith("validation at step")
    ]
    assert [shape(line) for line in printed] == [shape(readme)] * len(steps)
    rows = [r for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if r.get("val/mIoU_seen")]
    expected = [
        f"validation at step {step}/{steps[-1]}: "
        + "  ".join(
            f"{label} {percent(float(row[f'val/{key}']) if row[f'val/{key}'] else None)}"
            for label, key in (
                ("mIoU(S)", "mIoU_seen"),
                ("mIoU(U)", "mIoU_unseen"),
                ("hIoU", "hIoU"),
                ("mIoU", "mIoU"),
            )
        )
        for step, row in zip(steps, rows)
    ]
    assert printed == expected


def check_train(done: Done, documented: DocumentedRuns) -> None:
    (run_dir,) = done.folders("runs")
    check_validation_lines(done.stdout, run_dir, [2, 4])
    metrics = check_test_output(done.stdout, run_dir, done.workdir)
    assert (metrics["dataset"], metrics["setting"], metrics["seed"], metrics["split"]) == (
        "shapes",
        "inductive",
        0,
        "test",
    )
    assert metrics["weights"]["step"] == 4
    assert read_json(run_dir / "run.json")["status"] == "finished"
    assert {p.name for p in (run_dir / "plots").iterdir()} == {
        "confusion_matrix.png",
        "iou_per_class.png",
        "samples.png",
    }


def check_eval(done: Done, documented: DocumentedRuns) -> None:
    """`python eval.py`, as written (the bundled model, the full 1,000-image test set): the summary
    line is the README's for the precision ``auto`` picks here, digit for digit (evaluation of fixed
    weights does not depend on the CPU at a given precision); ``precision=fp32`` gives the fp32 line,
    which is also the end of `python train.py`'s output."""
    from zegclip.model.precision import choose

    (run_dir,) = done.folders("runs", "eval")
    fp32_line, bf16_mixed_line = (line.strip() for line in readme_block("prints, on every CPU we tried"))
    assert fp32_line == README_SUMMARY
    auto = choose("auto", "cpu").precision
    assert auto in ("fp32", "bf16-mixed"), auto
    printed = [line.strip() for line in done.stdout.splitlines() if line.startswith("mIoU_seen:")]
    assert printed == [fp32_line if auto == "fp32" else bf16_mixed_line], f"precision=auto chose {auto}"
    check_test_output(done.stdout, run_dir, done.workdir)
    if auto != "fp32":  # the fp32 line too, on this CPU
        fp32 = documented.get("eval.py", ["precision=fp32"])
        assert [ln.strip() for ln in fp32.stdout.splitlines() if ln.startswith("mIoU_seen:")] == [fp32_line]


def check_transductive(done: Done, documented: DocumentedRuns) -> None:
    """A transductive run in one command: the inductive stage's checkpoint, then the tested final weights."""
    (run_dir,) = done.folders("runs")
    metrics = read_json(run_dir / "metrics.json")
    inductive, transductive = metrics["stages"]
    assert (inductive["setting"], transductive["setting"]) == ("inductive", "transductive")
    assert Path(inductive["checkpoint"]).is_file()
    assert metrics["weights"]["step"] == transductive["last_step"] == 2 * inductive["last_step"]
    stage_lines = [line for line in done.stdout.splitlines() if line.startswith("validation at step")]
    stages = [re.search(r"\((\w+) stage\)", line).group(1) for line in stage_lines]
    assert stages == [
        "inductive",
        "inductive",
        "transductive",
        "transductive",
    ]  # the stage the weights are in
    check_validation_lines(done.stdout, run_dir, [2, 4, 6, 8])  # (4 inductive + 4 transductive steps)
    check_test_output(done.stdout, run_dir, done.workdir)


REPORT_COLUMNS = {
    "mIoU(S)": "mIoU_seen",
    "mIoU(U)": "mIoU_unseen",
    "hIoU": "hIoU",
    "mIoU": "mIoU",
    "pAcc": "pAcc",
}


def report_rows(report: str) -> list[dict[str, str]]:
    """The rows of report.md's first table (group, n, seeds, then one column per metric)."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["group", "n", "seeds", *REPORT_COLUMNS]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        for line in lines[1:]
        if not line.startswith("| job ")
    ]


def mean_std(jobs: list[dict[str, Any]], key: str) -> str:
    values = [j[key] for j in jobs]
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def check_seed_group(sweep: Path, report_dir: Path | None = None) -> list[dict[str, Any]]:
    """report.md of a 3-seed sweep: one group, n = 3, seeds 0,1,2, each cell the mean ± sample std
    of the jobs' metrics.json; report.csv the same in fractions. Returns the jobs' metrics."""
    jobs = [read_json(j / "metrics.json") for j in sorted(p for p in sweep.iterdir() if p.name.isdigit())]
    assert [j["seed"] for j in jobs] == [0, 1, 2]
    report_dir = report_dir or sweep
    report = (report_dir / "report.md").read_text()
    assert "- Jobs: 3 expected, 3 finished, 0 failed or missing." in report
    assert "## Failed or missing jobs\n\nNone." in report
    (row,) = report_rows(report)
    assert (row["n"], row["seeds"]) == ("3", "0,1,2")
    assert {label: row[label] for label in REPORT_COLUMNS} == {
        label: mean_std(jobs, key) for label, key in REPORT_COLUMNS.items()
    }
    (line,) = csv.DictReader((report_dir / "report.csv").open())
    for key in (*REPORT_COLUMNS.values(), "mAcc"):
        values = [j[key] for j in jobs]
        assert float(line[f"{key}_mean"]) == pytest.approx(statistics.mean(values), rel=1e-6)
        assert float(line[f"{key}_std"]) == pytest.approx(statistics.stdev(values), rel=1e-6)
        assert line[f"{key}_n"] == "3"
    return jobs


def check_seed_sweep(done: Done, documented: DocumentedRuns) -> None:
    (sweep,) = done.folders("multiruns")
    jobs = check_seed_group(sweep)
    hIoU = mean_std(jobs, "hIoU")
    assert hIoU in done.stdout and "0,1,2" in done.stdout  # the table is printed too
    # "its seed 0 job equals `python train.py` to the last digit on the same machine"
    single = read_json(documented.get("train.py", []).folders("runs")[0] / "metrics.json")
    keys = [*SUMMARY_KEYS, "IoU_per_class"]
    assert {k: jobs[0][k] for k in keys} == {k: single[k] for k in keys}


def check_predict(done: Done, documented: DocumentedRuns) -> None:
    """predictions.json, the label PNG and the overlay of the user's photo: the bundled model's own
    `model.predict` labels, their class shares, the image's size."""
    import numpy as np
    from PIL import Image

    import zegclip

    (run_dir,) = done.folders("runs", "predict")
    (record,) = [json.loads(line) for line in (run_dir / "predictions.json").read_text().splitlines()]
    photo = done.workdir / "photo.jpg"
    assert (record["file"], record["height"], record["width"]) == (str(photo), 120, 160)
    label = np.asarray(Image.open(run_dir / "labels" / "photo.png"))
    overlay = Image.open(run_dir / "overlays" / "photo.png")  # the picture, its legend beside it
    assert label.shape == (120, 160) and overlay.size[0] >= 160 and overlay.size[1] >= 120
    model = zegclip.load("shapes")
    names = model.metadata["class_names"]
    assert np.array_equal(label, model.predict(photo).label)  # the API's labels, as the command saved them
    counts = np.bincount(label.ravel(), minlength=len(names))
    shares = {c["name"]: c["share"] for c in record["classes"]}
    assert shares == {
        names[i]: pytest.approx(counts[i] / label.size, abs=1e-6) for i in np.flatnonzero(counts)
    }
    assert [c["index"] for c in record["classes"]] == [names.index(c["name"]) for c in record["classes"]]
    assert f"1 image(s), {len(names)} classes" in done.stdout
    assert record["precision"]["requested"] == "auto"


def check_tuning(done: Done, documented: DocumentedRuns) -> None:
    """One run on the tuning split: the true unseen classes left out, three seen classes playing the
    unseen part, the objective tune/hIoU (fair), nothing read from the test split."""
    (run_dir,) = done.folders("runs")
    pseudo = {line.split("│")[1].strip() for line in done.stdout.splitlines() if "│ pseudo-unseen │" in line}
    assert len(pseudo) == 3 and not pseudo & UNSEEN
    metrics = check_test_output(
        done.stdout.replace(", tuning split)", ")"), run_dir, done.workdir, pseudo, "pseudo-unseen"
    )
    assert metrics["split"] == "tune"
    assert metrics["objective"] == {"name": "tune/hIoU", "value": metrics["hIoU"], "fair": True}
    assert set(metrics["IoU_per_class"]).isdisjoint(UNSEEN) and len(metrics["IoU_per_class"]) == 12
    logged = set().union(*(r.keys() for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open())))
    assert not any(k.startswith("test/") for k in logged)


def check_study(done: Done, documented: DocumentedRuns) -> None:
    """The study folder (logs/train/optuna/<study>): its trials, their objective, the report, the best
    trial's overrides."""
    (folder,) = done.folders("optuna")
    assert folder.name == "shapes_inductive"
    trial_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in trial_dirs] == ["0", "1"] and (folder / "optuna.db").is_file()
    trials = [read_json(j / "metrics.json") for j in trial_dirs]
    assert all(
        t["split"] == "tune" and t["objective"]["name"] == "tune/hIoU" and t["objective"]["fair"]
        for t in trials
    )
    report = (folder / "report.md").read_text()
    assert "| 0 | complete |" in report and "| 1 | complete |" in report
    best = max(range(2), key=lambda i: trials[i]["objective"]["value"])
    assert f"**Best trial: #{best}" in report
    overrides = (folder / "best_overrides.txt").read_text().split()
    assert not any(
        o.startswith(("tuning=", "seed=", "optimized_metric=", "hparams_search=")) for o in overrides
    )
    assert {
        o for o in trials[best]["overrides"] if o.startswith(("optimizer.", "model.", "evaluation."))
    } <= set(overrides)


def check_best_retrain(done: Done, documented: DocumentedRuns) -> None:
    """Re-training the best trial's configuration on the real split with seeds 0, 1, 2: each job has
    the trial's overrides and the test split; report.md gives the test mean ± std."""
    (sweep,) = done.folders("multiruns")
    jobs = check_seed_group(sweep)
    best = set((done.workdir / "logs/train/optuna/shapes_inductive/best_overrides.txt").read_text().split())
    assert all(best <= set(j["overrides"]) and j["split"] == "test" for j in jobs)


CHECKS: dict[str, Callable[[Done, DocumentedRuns], None]] = {
    "train.py": check_train,
    "eval.py": check_eval,
    "train.py setting=transductive": check_transductive,
    "train.py -m seed=0,1,2": check_seed_sweep,
    "predict.py inputs=photo.jpg": check_predict,
    "train.py tuning=pseudo_unseen": check_tuning,
    STUDY: check_study,
    (
        f"train.py -m seed=0,1,2 {FROM_FILE}logs/train/optuna/shapes_inductive/best_overrides.txt"
    ): check_best_retrain,
}


# -- README commands outside the train / eval / predict blocks ------------------------------------------


def tta_rows() -> list[tuple[str, list[str]]]:
    """``(command, [mIoU(S), mIoU(U), hIoU])`` of the README's test-time augmentation table."""
    text = README.read_text()
    rows = re.findall(
        r"^\| `python (eval\.py[^`]*)` \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text, flags=re.M
    )
    assert len(rows) == 4, "the README's test-time augmentation table"
    return [(command, list(values)) for command, *values in rows]


TTA = tta_rows()


@pytest.mark.parametrize(
    ("command", "stated"),
    [
        pytest.param(c, v, marks=[pytest.mark.slow] if "scales=" in c else [])
        for c, v in TTA
        if c != "eval.py precision=fp32"  # the fp32 line of `python eval.py`: check_eval
    ],
    ids=[c for c, _ in TTA if c != "eval.py precision=fp32"],
)
def test_tta_table_rows(command: str, stated: list[str], tmp_path: Path) -> None:
    """Each row of the TTA table, run as written (the bundled model, the full test set): the printed
    mIoU(S) / mIoU(U) / hIoU are the table's (`python eval.py`'s row: test_documented_command). The
    multi-scale rows take about a minute each: slow."""
    stdout = run([sys.executable, str(REPO / "eval.py"), *shlex.split(command)[1:]], tmp_path)
    (line,) = [line for line in stdout.splitlines() if line.startswith("mIoU_seen:")]
    printed = dict(re.findall(r"(\w+): (\S+)", line))
    assert [printed["mIoU_seen"], printed["mIoU_unseen"], printed["hIoU"]] == stated


def test_palette_command_prints_the_stated_distances(tmp_path: Path) -> None:
    text = README.read_text()
    command = re.search(r'`python -c "(from zegclip\.common\.palette import [^"]*)"`', text)
    stated = re.search(
        r"CIE76 delta E\s+([\d.]+) apart at 20 classes, ([\d.]+) at 59 and ([\d.]+) at 171", text
    )
    assert command and stated, "the README's palette distances and the command that prints them"
    printed = run([sys.executable, "-c", command.group(1)], tmp_path).strip()
    assert printed == "[" + ", ".join(stated.groups()) + "]"


def readme_shell_commands(prefix: str) -> list[list[str]]:
    """The words of each README code-block line that starts with ``prefix`` (comments removed)."""
    text = README.read_text()
    return [
        shlex.split(line.split("#", 1)[0])
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.strip().startswith(prefix)
    ]


def test_export_onnx_command_of_the_bundled_model(tmp_path: Path) -> None:
    """`python -m zegclip.export shapes --onnx shapes.onnx --classes ... --seen ...`, as written: one
    file with the named vocabulary and seen class in its metadata (numbers: test_export_onnx.py)."""
    import onnx

    (words,) = readme_shell_commands("python -m zegclip.export shapes --onnx")
    stdout = run([sys.executable, *words[1:]], tmp_path)
    classes = next(words[i + 1] for i, w in enumerate(words) if w == "--classes").split(",")
    seen = next(words[i + 1] for i, w in enumerate(words) if w == "--seen")
    out = tmp_path / words[words.index("--onnx") + 1]
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert json.loads(meta["class_names"]) == classes and json.loads(meta["seen"]) == [classes.index(seen)]
    assert float(meta["seen_bias"]) == 0.1  # the default offset with --seen
    assert re.search(
        rf"wrote {re.escape(out.name)} \([\d.]+ MiB\): {len(classes)} classes, "
        r"seen offset -0\.1 on 1 classes",
        stdout.replace("\n", " "),
    )


def test_report_commands_on_documented_runs(documented: DocumentedRuns, tmp_path: Path) -> None:
    """`python -m zegclip.report logs/train/multiruns/<time>` on the documented 3-seed sweep rewrites
    its report (the same table); `... logs/train/runs/A logs/train/runs/B --per-class --out results/`
    on two documented runs (inductive, transductive) reports two groups of one and the per-class IoU."""
    import shutil

    sweep_done = documented.get("train.py", ["-m", "seed=0,1,2"])
    (sweep,) = sweep_done.folders("multiruns")
    first, second = readme_shell_commands("python -m zegclip.report logs/train/")
    callback_rows = report_rows((sweep / "report.md").read_text())
    (sweep / "report.md").unlink()
    run([sys.executable, *[w.replace("<time>", sweep.name) for w in first[1:]]], sweep_done.workdir)
    assert report_rows((sweep / "report.md").read_text()) == callback_rows
    check_seed_group(sweep)

    runs = tmp_path / "logs" / "train" / "runs"
    for name, command in (("A", []), ("B", ["setting=transductive"])):
        (source,) = documented.get("train.py", command).folders("runs")
        shutil.copytree(source, runs / name, ignore=shutil.ignore_patterns("*.ckpt"))
    run([sys.executable, *second[1:]], tmp_path)
    out = tmp_path / second[second.index("--out") + 1]
    report = (out / "report.md").read_text()
    rows = report_rows(report.split("## IoU per class")[0])
    assert [(r["n"], r["seeds"]) for r in rows] == [("1", "0"), ("1", "0")]
    metrics = [read_json(runs / name / "metrics.json") for name in ("A", "B")]
    cells = sorted(tuple(r[label] for label in REPORT_COLUMNS) for r in rows)
    assert cells == sorted(
        tuple(f"{100 * m[key]:.1f} ± -" for key in REPORT_COLUMNS.values()) for m in metrics
    )
    per_class = report.split("## IoU per class (%)")[1]
    assert all(f"| {name} |" in per_class for name in metrics[0]["IoU_per_class"])
    lines = list(csv.DictReader((out / "report.csv").open()))
    assert sorted(float(r["IoU/red circle_mean"]) for r in lines) == pytest.approx(
        sorted(m["IoU_per_class"]["red circle"] for m in metrics), rel=1e-6
    )


SWEEP_SPREAD = re.search(
    r"mIoU\(S\) ([\d.]+) ± ([\d.]+), mIoU\(U\) ([\d.]+) ± ([\d.]+), hIoU ([\d.]+) ± ([\d.]+)",
    README.read_text(),
)


@pytest.mark.slow
def test_train_as_written_lands_in_the_seed_spread(tmp_path: Path) -> None:
    """`python train.py`, unshortened (about 4 minutes): its test mIoU(S) / mIoU(U) / hIoU within three
    standard deviations of the README's 3-seed sweep (its last digits depend on the CPU), its output
    as the README shows it."""
    assert SWEEP_SPREAD, "the README states the 3-seed sweep's mean ± std"
    stdout = run([sys.executable, str(REPO / "train.py")], tmp_path)
    done = Done("train.py", tmp_path, stdout)
    (run_dir,) = done.folders("runs")
    check_validation_lines(stdout, run_dir, [250, 500, 750, 1000])
    metrics = check_test_output(stdout, run_dir, tmp_path)
    values = [float(v) for v in SWEEP_SPREAD.groups()]
    for key, mean, std in zip(("mIoU_seen", "mIoU_unseen", "hIoU"), values[0::2], values[1::2]):
        assert abs(100 * metrics[key] - mean) <= 3 * std, (key, 100 * metrics[key], mean, std)
