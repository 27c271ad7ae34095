"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH dataset=voc`.

PATH: a zegclip Lightning .ckpt, a training run folder (its final weights), an official ZegCLIP
.pth, a converted file, or "shapes" (the bundled shapes-world model, the default). Writes
metrics.json into the run folder.
"""

import hydra
from omegaconf import DictConfig

import zegclip.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from zegclip.errors import RunError
    from zegclip.runner import evaluate

    try:
        evaluate(cfg)
    except RunError as err:
        print(f"{type(err).__name__}: {err}", flush=True)
        raise SystemExit(err.exit_code) from None


if __name__ == "__main__":
    from zegclip.hydra_flags import run

    run(main, "eval")  # Hydra's flags, also `-m ... --cfg job` (per job)
