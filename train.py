"""Train ZegCLIP: `python train.py [dataset=voc|coco|context|custom|shapes] [setting=...] [key=value ...]`.

With no arguments it trains on the embedded shapes world (no download needed). See README.md.
"""

import hydra
from omegaconf import DictConfig

import zegclip.engine.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zegclip.engine import cli
    from zegclip.engine.objective import objective_value
    from zegclip.engine.train import train

    summary = cli.run_job(train, cfg)  # one line and an exit code; in a sweep, a failed job goes to Hydra
    return objective_value(cfg, summary)  # optimized_metric, for Hydra sweepers (null: nothing)


if __name__ == "__main__":
    from zegclip.engine.hydra_flags import run

    run(main, "train")  # Hydra's flags, also `-m ... --cfg job` (per job)
