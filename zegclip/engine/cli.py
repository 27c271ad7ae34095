"""How the command-line programs end when something goes wrong: one line the user can act on.

``train.py``, ``eval.py``, ``predict.py``, ``python -m zegclip.demo`` and ``python -m
zegclip.export`` run their work through :func:`run`. It prints ``<ErrorType>: <message>`` on
stderr, without a traceback, and exits with:

* 2 for a :class:`~zegclip.common.errors.UserError` (configuration, data, checkpoint, input; as argparse
  does for usage errors), also when Hydra's ``instantiate`` wraps it, Lightning's
  ``MisconfigurationException`` (a bad ``trainer.*`` value) and a mandatory config value left out;
* the error's own code for a :class:`~zegclip.common.errors.RunError`: 128 + signal for an interrupted
  run (130 Ctrl+C, 143 SIGTERM), 1 for a failed one (diverged, a file that could not be written);
* 1 for a full or read-only disk met anywhere (an ``OSError`` ENOSPC / EDQUOT / EFBIG / EROFS);
* 130 for Ctrl+C outside training.

A failure while stopping (a second error raised while the first was handled) never hides the
first: the first is reported, the second named after it. ``HYDRA_FULL_ERROR=1`` prints the full
traceback before the line (same exit code). Any other exception is a bug and propagates with its
traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from zegclip.common.errors import RunError, RunInterrupted, UserError

T = TypeVar("T")
FULL_TRACE_ENV = "HYDRA_FULL_ERROR"
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def run(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)``; a known error ends the process with one line (module docstring)."""
    try:
        return work(*args, **kwargs)
    except BaseException as err:  # noqa: BLE001 (re-raised unless it is a known error)
        fail(err)


def run_job(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """:func:`run` for a Hydra job. In a multirun, a job's error (a diverged trial, a bad value in
    one job's overrides) goes to Hydra instead, which records the job as failed (the sweep report
    lists it with the reason) and lets the sweeper go on; an interrupt still ends the sweep."""
    from zegclip.engine.hydra_job import is_multirun

    try:
        return work(*args, **kwargs)
    except BaseException as err:  # noqa: BLE001 (re-raised unless it is a known error)
        if is_multirun() and isinstance(err, Exception) and not isinstance(err, RunInterrupted):
            raise
        fail(err)


def fail(err: BaseException) -> NoReturn:
    """End the process with one line and an exit code for a known error; re-raise anything else."""
    known = explain(err)
    if known is None:
        raise err
    message, code = known
    if os.environ.get(FULL_TRACE_ENV, "") not in ("", "0"):
        traceback.print_exception(err)
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def explain(err: BaseException) -> tuple[str, int] | None:
    """The line to print and the exit code for ``err``, or None when it is a bug (or an exit)."""
    if isinstance(err, SystemExit):
        return None
    first = _first_known(err)
    if first is None:
        return None
    known, code = first
    message = f"{type(known).__name__}: {known}"
    if known is not err and _classify(err) is None and not _wraps(err, known):
        message += f" (then, while stopping: {type(err).__name__}: {err})"
    return message, code


def _classify(err: BaseException) -> tuple[BaseException, int] | None:
    """``(the error to show, exit code)`` if ``err`` itself is a known kind (wrappers unwrapped)."""
    if isinstance(err, (RunError, UserError)):
        return err, int(getattr(err, "exit_code", 1))
    if _is_wrapper(err) and err.__cause__ is not None:
        return _classify(err.__cause__)
    if _is_instance(err, "omegaconf.errors", "MissingMandatoryValue"):
        return err, 2
    if _is_instance(err, "lightning.fabric.utilities.exceptions", "MisconfigurationException"):
        return err, 2
    if isinstance(err, OSError) and err.errno in DISK_ERRORS:
        return err, 1
    if isinstance(err, KeyboardInterrupt):
        return KeyboardInterrupt("stopped (Ctrl+C)"), 130
    return None


def _first_known(err: BaseException) -> tuple[BaseException, int] | None:
    """The known error that started ``err``'s chain (errors raised while handling another, not
    ``raise ... from``), or None when the chain started with a bug."""
    first = err
    seen = {id(err)}
    while (
        first.__context__ is not None and not first.__suppress_context__ and id(first.__context__) not in seen
    ):
        first = first.__context__
        seen.add(id(first))
    return _classify(first)


def _wraps(err: BaseException, inner: BaseException) -> bool:
    while _is_wrapper(err) and err.__cause__ is not None:
        err = err.__cause__
        if err is inner:
            return True
    return False


def _is_wrapper(err: BaseException) -> bool:
    """Hydra's ``instantiate`` and OmegaConf's resolvers wrap the error raised inside them."""
    return _is_instance(err, "hydra.errors", "InstantiationException") or _is_instance(
        err, "omegaconf.errors", "InterpolationResolutionError"
    )


def _is_instance(err: BaseException, module: str, name: str) -> bool:
    """``isinstance`` against a library's class, without importing the library (if it was never
    imported, the error cannot be one of its classes)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(err, cls)
