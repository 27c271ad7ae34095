"""``python -m zegclip.report PATH [PATH ...] [--per-class] [--out DIR] [--ignore KEY]``: the sweep report.

Reads the ``metrics.json`` of every job of a multirun folder (``logs/train/multiruns/<time>/``) or
of run folders, groups the jobs by their command-line overrides without ``seed`` (and without
``hydra``, ``paths``, ``logger`` keys, which are not experimental variables, nor those given with
``--ignore``), and writes ``report.md`` and ``report.csv`` (mean, sample std and n per metric and
group), printing the table. Jobs a sweep defines that left no ``metrics.json`` are listed as failed
or missing, with the reason when one was recorded. Evaluation jobs also get the open-vocabulary
table (``benchmark_table.md`` / ``.csv``, :mod:`zegclip.engine.benchmark_table`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zegclip.engine.report.render import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zegclip.report",
        description="Mean ± std over seeds of every group of runs of a sweep (jobs with the same overrides "
        "except seed); writes report.md and report.csv, and for evaluation jobs (eval.py) the "
        "open-vocabulary table benchmark_table.md / .csv (a row per model, a column per benchmark).",
    )
    parser.add_argument(
        "paths", nargs="+", help="multirun folder(s) (logs/train/multiruns/<time>) or run folders"
    )
    parser.add_argument("--per-class", action="store_true", help="also report each class's IoU")
    parser.add_argument("--out", help="folder for report.md / report.csv (default: the first PATH)")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="an override key (and its sub-keys) that does not define groups, e.g. init_from; repeatable "
        "(seed, hydra, paths and logger never do)",
    )
    args = parser.parse_args(argv)
    try:
        run(args.paths, out=args.out, per_class=args.per_class, ignore=args.ignore)
    except FileNotFoundError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
