"""``hydra/sweeper=zegclip_optuna``: hydra-optuna-sweeper with a study that an interrupted search
continues (zegclip/engine/study.py). Imported by Hydra's plugin scan at every start: it imports nothing
heavy until it is used."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ZegclipOptunaSweeper(Sweeper):
    """The Optuna sweeper's implementation, prepared by :func:`zegclip.engine.study.prepare` before it
    sweeps. Takes the plugin's arguments (``OptunaSweeperConf``); ``sampler`` is a config (the
    sweeper is instantiated with ``_recursive_: false``) so that a missing install says what to do."""

    def __init__(self, **kwargs: Any) -> None:
        try:
            from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
        except ImportError as err:
            from zegclip.engine.study import INSTALL_HINT

            raise ImportError(f"{INSTALL_HINT} ({err})") from err
        self.impl = OptunaSweeperImpl(**kwargs)
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from zegclip.engine.study import prepare, write_results

        assert self.config is not None
        if prepare(self.impl, self.config) is None:
            return None
        try:
            return self.impl.sweep(arguments)
        except (SystemExit, KeyboardInterrupt):  # an interrupted trial: the study continues later
            from zegclip.training.console import announce

            announce(
                f"search interrupted: continue study {self.impl.study_name} with the same command (the "
                "interrupted trial is recorded as failed and its parameters are tried again)"
            )
            raise
        except ValueError as err:  # the plugin's study.best_trial with no complete trial
            import optuna

            study = optuna.load_study(study_name=self.impl.study_name, storage=self.impl.storage)
            if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                raise
            raise RuntimeError(
                f"no trial of study {self.impl.study_name} completed: report.md in "
                f"{self.config.hydra.sweep.dir} "
                "lists why each one failed"
            ) from err
        finally:
            from pathlib import Path

            try:
                import optuna

                from zegclip.engine.report.render import run

                folder = Path(str(self.config.hydra.sweep.dir))
                study = optuna.load_study(study_name=self.impl.study_name, storage=self.impl.storage)
                write_results(study, folder)
                run(
                    [folder], quiet=True
                )  # the report with every trial's final state (also when the search failed)
            except Exception:  # never hide the sweep's own outcome
                pass
