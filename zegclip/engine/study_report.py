"""The Optuna part of a study folder's sweep report: every trial (parameters, objective, state),
the best trial, and the overrides that re-train it on the real split (``best_overrides.txt``).

``report.md`` of a study folder (``logs/train/optuna/<study>``, zegclip/engine/report/) ends with this
section; ``python -m zegclip.report FOLDER`` writes it too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from zegclip.common.atomic import write_text

STORAGE_FILE = "optuna.db"
BEST_FILE = "best_overrides.txt"
# overrides of a trial that belong to the search, not to the configuration it tried
SEARCH_ONLY = (
    "hparams_search",
    "tuning",
    "optimized_metric",
    "allow_unfair_objective",
    "seed",
    "hydra",
    "dataset.holdout_fraction",
    "dataset.holdout_max_images",
    "dataset.pseudo_unseen",
    "dataset.pseudo_unseen_count",
    "dataset.tuning_seed",
)


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(folder / STORAGE_FILE).resolve()}"


def load_studies(folder: Path) -> list[Any]:
    """The studies stored in ``folder/optuna.db`` (empty without the file)."""
    if not (folder / STORAGE_FILE).is_file():
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(folder)
    return [
        optuna.load_study(study_name=s.study_name, storage=url) for s in optuna.get_all_study_summaries(url)
    ]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def trial_overrides(folder: Path, number: int) -> list[str]:
    """The configuration trial ``number`` tried, as overrides for a normal run on the real split:
    its dataset and setting, the search's other command-line overrides and the trial's parameters,
    without what only the search needs (the tuning split, the objective, the seed, Hydra keys)."""
    job = folder / str(number) / ".hydra"
    overrides = OmegaConf.load(job / "overrides.yaml")
    choices = OmegaConf.load(job / "hydra.yaml").hydra.runtime.choices
    kept = [
        str(o)
        for o in overrides
        if not any(_key(str(o)) == k or _key(str(o)).startswith((f"{k}.", f"{k}/")) for k in SEARCH_ONLY)
    ]
    kept = [o for o in kept if _key(o) not in ("dataset", "setting")]
    return [f"dataset={choices.dataset}", f"setting={choices.setting}", *kept]


def _value(trial: Any) -> str:
    value = trial.value
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _state(trial: Any, folder: Path) -> str:
    state = trial.state.name.lower()
    if trial.user_attrs.get("interrupted"):
        return "failed (interrupted; its parameters were queued again)"
    if state == "fail":
        from zegclip.engine.report.failures import failure_reason
        from zegclip.engine.report.render import _md_escape

        job = folder / str(trial.number)
        reason = failure_reason(job) if job.is_dir() else "no job folder"
        return _md_escape(reason if reason.startswith("failed") else f"failed: {reason}")
    return state


def _param(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def study_sections(sources: list[Path]) -> str:
    """The Optuna sections of a report over ``sources`` ("" when none holds a study)."""
    lines: list[str] = []
    for source in sources:
        if (Path(source) / STORAGE_FILE).is_file():
            try:
                lines += study_markdown(Path(source))
            except ImportError as err:
                lines += ["", f'(Optuna study in {source} not shown: {err}; pip install "zegclip[optuna]")']
    return "\n".join(lines) + "\n" if lines else ""


def study_markdown(folder: Path, write_best: bool = True) -> list[str]:
    """Markdown lines for every study in ``folder`` (and ``best_overrides.txt`` for the best trial)."""
    lines: list[str] = []
    for study in load_studies(folder):
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"]
        metric = _objective_name(folder, trials)
        names = sorted({p for t in trials for p in t.params})
        lines += ["", f"## Optuna study `{study.study_name}`", ""]
        lines.append(
            f"- Storage: `{storage_url(folder)}`; direction: {study.direction.name.lower()}; objective: "
            f"`{metric}` (%), measured on the tuning split, never on the test split."
        )
        lines.append(
            f"- Trials: {len(trials)} ({sum(t.state.name == 'COMPLETE' for t in trials)} complete); "
            "continue the study with the same command."
        )
        lines.append(
            "- Every metric of this folder's report is on the tuning split (held-out training images; "
            "mIoU(U): the pseudo-unseen classes)."
        )
        lines += ["", "| trial | state | objective | " + " | ".join(f"`{n}`" for n in names) + " |"]
        lines.append("|---|---|---|" + "---|" * len(names))
        for t in trials:
            cells = [
                str(t.number),
                _state(t, folder),
                _value(t),
                *(_param(t.params.get(n, "-")) for n in names),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        lines.append("")
        if not complete:
            lines.append("No trial completed yet: no best trial.")
            continue
        best = study.best_trial
        params = ", ".join(f"`{k}={_param(v)}`" for k, v in best.params.items())
        lines.append(
            f"**Best trial: #{best.number}**, `{metric}` = {_value(best)}: {params} (run folder "
            f"`{best.number}/`)."
        )
        if (folder / str(best.number) / ".hydra").is_dir():
            overrides = trial_overrides(folder, best.number)
            if write_best:
                write_text(folder / BEST_FILE, "\n".join(overrides) + "\n", what="best trial overrides")
            lines += [
                "",
                "Re-train it on the real split with seeds 0, 1, 2 (test mean ± "
                "std in that sweep's report.md):",
                "",
                "```bash",
                f"python train.py -m seed=0,1,2 $(cat {_shown(folder / BEST_FILE)})",
                "```",
                "",
                "i.e. `python train.py -m seed=0,1,2 " + " ".join(overrides) + "`",
            ]
    return lines


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _objective_name(folder: Path, trials: list[Any]) -> str:
    for t in trials:
        config = folder / str(t.number) / ".hydra" / "config.yaml"
        if config.is_file():
            return str(OmegaConf.load(config).get("optimized_metric"))
    return "the returned value"
