"""Train ZegCLIP: `python train.py [dataset=voc|coco|context|custom|shapes] [setting=...] [key=value ...]`.

With no arguments it trains on the embedded shapes world (no download needed). See README.md.
"""

import hydra
from omegaconf import DictConfig

import zegclip.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zegclip.errors import RunError, RunInterrupted
    from zegclip.objective import objective_value
    from zegclip.runner import is_multirun, train

    try:
        summary = train(cfg)
    except RunError as err:  # interrupted, diverged, unwritable: one clear line and a non-zero exit
        if is_multirun() and not isinstance(err, RunInterrupted):
            raise  # one failed job of a sweep (e.g. a diverged trial): the sweeper records it and goes on
        print(f"{type(err).__name__}: {err}", flush=True)
        raise SystemExit(err.exit_code) from None
    return objective_value(cfg, summary)  # optimized_metric, for Hydra sweepers (null: nothing)


if __name__ == "__main__":
    from zegclip.hydra_flags import run

    run(main, "train")  # Hydra's flags, also `-m ... --cfg job` (per job)
