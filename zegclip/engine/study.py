"""An Optuna study that an interrupted search continues (``hparams_search=<dataset>_optuna``).

The study folder is fixed by the study's name (``logs/train/optuna/<study_name>``), so running the
same command again continues the same study from its SQLite file (``optuna.db``):

* the folder is locked while a search runs in it (a second search is refused, not mixed in);
* a trial left ``RUNNING`` by an interrupted search is recorded as failed (``interrupted``), and
  its parameters are queued again so that the search still evaluates them;
* ``hydra.sweeper.n_trials`` counts the study's trials in total: a continued search runs only the
  missing ones (finished trials, failed ones included, count; interrupted ones do not);
* job folders are numbered by trial (``<folder>/<trial number>``), so no folder is reused;
* the sampler's seed is offset by the number of trials already asked, so that a continued search
  does not draw the same random start-up parameters again.

Used by the sweeper plugin ``hydra_plugins/zegclip_study`` (Hydra finds plugins only there).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from zegclip.common.atomic import write_text
from zegclip.engine.objective import check_objective
from zegclip.training.console import announce

INSTALL_HINT = 'hparams_search needs the Optuna sweeper: pip install "zegclip[optuna]"'
LOCK_FILE = ".study.lock"


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return optuna


class StudyInUseError(RuntimeError):
    """Another search holds the study folder."""


@dataclass
class StudyState:
    """What a continued search starts from."""

    trials: int  # trials in the study (every state)
    finished: int  # trials that count towards n_trials
    interrupted: list[int]  # trials this search found RUNNING and recorded as failed
    remaining: int  # trials this search runs


def lock(folder: Path) -> TextIO:
    """Hold ``folder/.study.lock`` for this process (released when it exits, however it exits)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115  (kept open: the lock lives as long as the search)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StudyInUseError(
            f"the study folder {folder} is in use by another search ({holder}); wait for it to end, or give "
            "this search its own study: hydra.sweeper.study_name=<name>"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle


def counts(trial: Any, optuna: Any) -> bool:
    """Whether a trial counts towards ``n_trials``: it ended by itself (complete, pruned, failed)."""
    states = optuna.trial.TrialState
    if trial.state in (states.COMPLETE, states.PRUNED):
        return True
    return trial.state == states.FAIL and not trial.user_attrs.get("interrupted", False)


def continue_study(study: Any, n_trials: int) -> StudyState:
    """Record the trials an interrupted search left running, queue their parameters again, and say
    how many trials this search runs."""
    optuna = import_optuna()
    running = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in running:
        study._storage.set_trial_user_attr(
            trial._trial_id, "interrupted", True
        )  # optuna<3 has no public call
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(dict(trial.params))
    trials = study.get_trials(deepcopy=False)
    finished = sum(counts(t, optuna) for t in trials)
    queued = sum(t.state == optuna.trial.TrialState.WAITING for t in trials)
    return StudyState(
        len(trials) - queued, finished, [t.number for t in running], max(0, int(n_trials) - finished)
    )


NOT_THE_SEARCH = ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.launcher", "hydra/launcher")


def search_overrides(config: DictConfig) -> list[str]:
    """The command-line overrides that define a search (not how many trials or where they run)."""
    task = [str(o) for o in config.hydra.overrides.task]
    return sorted(o for o in task if not o.lstrip("+~").startswith(NOT_THE_SEARCH))


def check_same_search(study: Any, config: DictConfig) -> None:
    """A study is continued only by the search that started it (same overrides): trials of two
    different searches in one study would compare objectives that do not compare."""
    ours = search_overrides(config)
    started = study.user_attrs.get("overrides")
    if started is None:
        if not study.get_trials(deepcopy=False):
            study.set_user_attr("overrides", ours)
        return
    if list(started) != ours:
        raise ValueError(
            f"study {study.study_name} was started by a search with the overrides {list(started)}; this "
            f"command has {ours}. Continue it with the same overrides (hydra.sweeper.n_trials may differ), "
            "or start another study: hydra.sweeper.study_name=<new name>"
        )


def prepare(impl: Any, config: DictConfig) -> StudyState | None:
    """Before the plugin's ``sweep``: check the objective, lock the folder, continue the study, and
    set the plugin's trial count, job numbering and sampler. None: nothing left to run."""
    check_objective(config, sweeper="optuna")  # before any trial
    optuna = import_optuna()
    folder = Path(str(config.hydra.sweep.dir))
    impl._zegclip_lock = lock(folder)
    write_text(
        folder / "multirun.yaml", OmegaConf.to_yaml(config), what="sweep config"
    )  # as Hydra's basic sweeper does: the report finds the sweep by it
    if not impl.study_name:
        raise ValueError("hydra.sweeper.study_name is null: a study needs a name to be continued")
    directions = impl._get_directions()
    study = optuna.create_study(
        study_name=impl.study_name, storage=impl.storage, directions=directions, load_if_exists=True
    )
    check_same_search(study, config)
    state = continue_study(study, impl.n_trials)
    sampler_cfg = config.hydra.sweeper.sampler
    seed = sampler_cfg.get("seed")
    offset = {"seed": int(seed) + state.trials} if seed is not None and state.trials else {}
    impl.sampler = instantiate(OmegaConf.to_container(sampler_cfg, resolve=True), **offset)
    impl.job_idx = state.trials  # job folder = trial number (queued trials are asked first)
    impl.n_trials = state.remaining
    where = f"{folder} ({impl.storage})"
    if state.trials:
        note = (
            f"; interrupted trial(s) {state.interrupted} recorded as failed and queued again"
            if state.interrupted
            else ""
        )
        announce(
            f"continuing study {impl.study_name}: {state.finished} of {int(config.hydra.sweeper.n_trials)} "
            f"trials finished{note}; running {state.remaining} more in {where}"
        )
    else:
        announce(f"new study {impl.study_name}: {state.remaining} trials in {where}")
    if state.remaining == 0:
        announce(
            f"study {impl.study_name} has its {state.finished} trials: raise "
            "hydra.sweeper.n_trials to run more"
        )
        write_results(study, folder)
        return None
    return state


def write_results(study: Any, folder: Path) -> None:
    """``optimization_results.yaml`` as the plugin writes it (best parameters and value), when a
    trial completed."""
    optuna = import_optuna()
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return
    best = study.best_trial
    best_yaml = OmegaConf.to_yaml(
        OmegaConf.create({"name": "optuna", "best_params": best.params, "best_value": best.value})
    )
    write_text(folder / "optimization_results.yaml", best_yaml, what="search result")
