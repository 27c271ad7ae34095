"""Hydra's own flags on every entry point, including the one combination Hydra refuses.

``python train.py -m seed=0,1 --cfg job`` asks for the configuration of each job of a sweep; Hydra
1.3 stops with "Only one of --run, --multirun, --cfg, --info ... can be specified". :func:`run`
answers it the way ``--cfg`` answers a single run: Hydra's own ``show_cfg`` for every job of the
sweep (the basic sweeper's expansion of ``a=1,2`` into jobs), each under a ``# job N`` header. A
sweeper that chooses its jobs while it runs (Optuna) gets the sweep's fixed configuration once. Every
other command line goes to the entry point's ``@hydra.main`` unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def run(main: Callable[[], Any], config_name: str, argv: Sequence[str] | None = None) -> None:
    """``main()`` (a ``@hydra.main`` function), or the per-job configs of ``-m ... --cfg``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not show_sweep_configs(config_name, args):
        main()


def show_sweep_configs(config_name: str, argv: Sequence[str]) -> bool:
    """Print ``--cfg`` for each job of ``-m ... --cfg job|hydra|all [--resolve] [--package P]``.

    Returns False (nothing printed) unless the command line combines ``--multirun`` and ``--cfg``.
    """
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(list(argv))
    if not (args.multirun and args.cfg) or args.config_dir or args.config_path:
        return False
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    import zegclip.engine.resolvers  # noqa: F401  (the configs' ${zegclip.*} resolvers)

    name = args.config_name or config_name
    parsed = OverridesParser.create().parse_overrides(args.overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    app = Hydra.create_main_hydra2(
        task_name=name, config_search_path=create_config_search_path(str(CONF_DIR))
    )
    sweep_cfg = app.compose_config(name, fixed, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
    sweeper = str(sweep_cfg.hydra.sweeper.get("_target_", ""))
    if sweeper == BASIC_SWEEPER:
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]
    else:
        swept = [o.input_line for o in parsed if o.is_sweep_override()]
        print(
            f"# {sweeper} chooses each job's values while it runs (swept: "
            f"{swept or 'its configured params'}); "
            "the fixed configuration of every job:"
        )
        jobs = [fixed]
    for number, job in enumerate(jobs):
        print(f"# job {number} of {len(jobs)}: {' '.join(job) or '(no overrides)'}")
        app.show_cfg(name, list(job), args.cfg, args.package, args.resolve)
    return True
