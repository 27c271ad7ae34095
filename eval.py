"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH dataset=voc`.

PATH: a zegclip Lightning .ckpt, a training run folder (its final weights), an official ZegCLIP
.pth, a converted file, or "shapes" (the bundled shapes-world model, the default). Writes
metrics.json into the run folder.
"""

import hydra
from omegaconf import DictConfig

import zegclip.engine.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from zegclip.engine import cli
    from zegclip.engine.evaluate import evaluate

    cli.run_job(evaluate, cfg)  # one line and an exit code; in a sweep, a failed job goes to Hydra


if __name__ == "__main__":
    from zegclip.engine.hydra_flags import run

    run(main, "eval")  # Hydra's flags, also `-m ... --cfg job` (per job)
