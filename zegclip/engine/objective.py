"""What a hyper-parameter search optimises: ``optimized_metric``, and the rule that keeps the test
split and the unseen classes' labels out of it (SPEC.md §9; the same rule as checkpoint selection,
:func:`zegclip.training.checkpointing.check_selection_metric`, one level up).

``optimized_metric`` names what ``train.py`` returns to a Hydra sweeper:

* ``tune/<metric>``: the final weights on the tuning split (``tuning=pseudo_unseen``): held-out
  training images, seen vs pseudo-unseen classes. Fair in every setting.
* ``test/<metric>``: the final weights on the test split. In the inductive and transductive
  settings of a zero-shot dataset it would tune the method on its test set with the unseen
  classes' labels, so it is refused unless ``allow_unfair_objective=true``.
* ``null`` (the default): nothing; an optimising sweeper (Optuna, ...) is refused.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from zegclip.common.metric_names import OBJECTIVE_KEYS

STAGES = {"tune": "the tuning split (tuning=pseudo_unseen)", "test": "the test split"}
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
FAIR_EXAMPLE = "hparams_search=<dataset>_optuna, or tuning=pseudo_unseen optimized_metric=tune/hIoU"


class ObjectiveError(ValueError):
    """An ``optimized_metric`` that may not or cannot be optimised with this config."""


def is_zero_shot(cfg: DictConfig) -> bool:
    """Unseen classes in the inductive or transductive setting (the rule's scope)."""
    return bool(cfg.dataset.get("unseen")) and str(cfg.get("setting")) in ("inductive", "transductive")


def current_sweeper() -> str | None:
    """``hydra.sweeper._target_`` of the running Hydra job (None outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().sweeper.get("_target_"))
    except (ValueError, ImportError):
        return None


def check_objective(cfg: DictConfig, sweeper: str | None = None) -> None:
    """Refuse, before anything runs, an objective a zero-shot search may not use, or cannot get.

    Args:
        cfg: the composed train config.
        sweeper: the Hydra sweeper's ``_target_`` (None: not in a sweep or unknown).
    """
    metric = cfg.get("optimized_metric")
    tuning = cfg.get("tuning")
    if metric is None:
        if sweeper is not None and sweeper != BASIC_SWEEPER:
            raise ObjectiveError(
                f"hydra.sweeper={sweeper.rsplit('.', 1)[-1]} optimises what train.py returns, but "
                f"optimized_metric is null (nothing). Set a fair objective: {FAIR_EXAMPLE}"
            )
        return
    stage, _, name = str(metric).partition("/")
    if stage not in STAGES or name not in OBJECTIVE_KEYS:
        raise ObjectiveError(
            f"optimized_metric={metric}: expected <split>/<metric> with split tune ({STAGES['tune']}) or "
            f"test, and metric one of {', '.join(OBJECTIVE_KEYS)}"
        )
    if stage == "tune" and tuning is None:
        raise ObjectiveError(
            f"optimized_metric={metric} is measured on the tuning split: add tuning=pseudo_unseen "
            "(held-out training images, pseudo-unseen classes)"
        )
    if stage == "test" and tuning is not None:
        raise ObjectiveError(
            f"optimized_metric={metric}: tuning={tuning} never reads the test split; use tune/{name}"
        )
    if stage == "test" and is_zero_shot(cfg):
        if not cfg.get("allow_unfair_objective", False):
            raise ObjectiveError(
                f"optimized_metric={metric} would tune the {cfg.setting} zero-shot method on its test split, "
                "with the labels of the unseen classes it must never see; its result would no longer be "
                f"zero-shot. A fair objective is tune/{name} on held-out training images with pseudo-unseen "
                f"classes: {FAIR_EXAMPLE}. (allow_unfair_objective=true does it anyway.)"
            )
        _warn_unfair(str(metric))
    if not cfg.get("test_after_training", True):
        raise ObjectiveError(
            f"optimized_metric={metric} is measured after training: test_after_training must be true"
        )
    if tuning is not None and cfg.get("text", {}).get("embedding_file"):
        raise ObjectiveError(
            "tuning=pseudo_unseen: text.embedding_file holds embeddings of the benchmark's classes, not of "
            "the tuning vocabulary (its seen classes); set text.embedding_file=null "
            "(the text tower computes them)"
        )


def _warn_unfair(metric: str) -> None:
    from zegclip.training.console import console

    console.print(
        f"[bold red]allow_unfair_objective=true: optimising {metric}, measured with the test split's "
        "unseen-class labels. Hyper-parameters chosen this way make the results not zero-shot; do not report "
        "them as such.[/bold red]"
    )


def objective_value(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """The value of ``optimized_metric`` in a run's summary (None when no objective is set or the
    run tested nothing; NaN when the metric is undefined, which Optuna records as a failed trial)."""
    metric = cfg.get("optimized_metric")
    if metric is None or not summary:
        return None
    stage, _, name = str(metric).partition("/")
    measured = summary.get("split", "test")
    if stage != measured:
        raise ObjectiveError(
            f"optimized_metric={metric}, but this run was evaluated on {STAGES.get(measured, measured)}"
        )
    value = float(summary.get(name, math.nan))
    return value


def objective_record(cfg: DictConfig, summary: dict[str, Any]) -> dict[str, Any] | None:
    """``{"name", "value", "fair"}`` for ``metrics.json`` (None without an objective)."""
    metric = cfg.get("optimized_metric")
    if metric is None or not summary:
        return None
    value = objective_value(cfg, summary)
    fair = not (str(metric).startswith("test/") and is_zero_shot(cfg))
    return {"name": str(metric), "value": None if value is None or math.isnan(value) else value, "fair": fair}


def check_tuning_start(init_from: str | None, datamodule: Any) -> None:
    """A tuning run may start only from a checkpoint trained on the same tuning split: any other
    (e.g. an inductive run of the benchmark) was trained with the pseudo-unseen classes' labels."""
    if not init_from:
        return
    from zegclip.model.checkpoint import read_checkpoint

    _, _, meta = read_checkpoint(init_from)
    same = list(meta.get("class_names") or []) == list(datamodule.class_names) and list(
        meta.get("seen") or []
    ) == list(datamodule.seen)
    if not same:
        trained = [n for i, n in enumerate(meta.get("class_names") or []) if i in set(meta.get("seen") or [])]
        leaked = sorted(set(trained) & set(datamodule.class_split.unseen_names))
        raise ObjectiveError(
            f"init_from={init_from} was not trained on this tuning split (its seen classes: {len(trained)}, "
            f"including the pseudo-unseen {leaked or '(none)'}; its vocabulary differs): it would carry "
            "labels the tuning run must not see. Start from a checkpoint of an inductive run with the same "
            "tuning=pseudo_unseen split, or leave init_from unset"
        )
