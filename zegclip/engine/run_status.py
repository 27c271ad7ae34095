"""How a run ended, recorded in its folder's ``run.json``: finished, interrupted or failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from zegclip.common.errors import RunInterrupted
from zegclip.engine import run_folder
from zegclip.engine.hydra_job import output_dir


def claim(cfg: DictConfig) -> run_folder.RunFolder | None:
    """Mark the run folder as this run's (launching process only; DDP children share it)."""
    if rank_zero_only.rank != 0:
        return None
    return run_folder.claim(output_dir(cfg), str(cfg.task_name))


@contextmanager
def recorded(
    folder: run_folder.RunFolder | None,
    last_good: Callable[[], str | None] | None = None,
    signal: Callable[[], int | None] = lambda: None,
) -> Iterator[None]:
    """Run the block and record its end in ``folder``: ``finished``, ``interrupted`` (re-raised as
    :class:`RunInterrupted`, also when Lightning's own SIGTERM handler got there first) or
    ``failed`` (re-raised). ``last_good``: the newest complete checkpoint, recorded with the end;
    ``signal``: the signal that arrived (default SIGTERM)."""

    def checkpoint() -> dict[str, Any]:
        return {} if last_good is None else {"last_checkpoint": last_good()}

    try:
        yield
    except (RunInterrupted, SIGTERMException) as err:
        if isinstance(err, SIGTERMException):
            err = RunInterrupted(signal() or 15, None, last_good() if last_good else None)
        _finish(folder, "interrupted", error=str(err), **checkpoint())
        raise err from None
    except BaseException as err:
        _finish(folder, "failed", error=f"{type(err).__name__}: {err}", **checkpoint())
        raise
    _finish(folder, "finished", **checkpoint())


@rank_zero_only
def _finish(folder: run_folder.RunFolder | None, status: str, **info: Any) -> None:
    if folder is not None:
        folder.finish(status, **info)
