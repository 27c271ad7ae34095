"""The sweep report: mean ± std over seeds for every group of a sweep's runs.

:mod:`~zegclip.engine.report.jobs` reads the run folders, :mod:`~zegclip.engine.report.failures`
says why a job left no metrics, :mod:`~zegclip.engine.report.stats` summarises each group,
:mod:`~zegclip.engine.report.render` writes ``report.md`` / ``report.csv`` and
:mod:`~zegclip.engine.report.callback` is the Hydra callback that writes them after every sweep.
The command is ``python -m zegclip.report`` (:mod:`zegclip.apps.sweep_report`).
"""
