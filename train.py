"""Train ZegCLIP: `python train.py [dataset=voc|coco|context|custom|shapes] [setting=...] [key=value ...]`.

With no arguments it trains on the embedded shapes world (no download needed). See README.md.
"""

import hydra
from omegaconf import DictConfig

import zegclip.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zegclip.errors import RunError
    from zegclip.runner import train

    try:
        summary = train(cfg)
    except RunError as err:  # interrupted, diverged, unwritable: one clear line and a non-zero exit
        print(f"{type(err).__name__}: {err}", flush=True)
        raise SystemExit(err.exit_code) from None
    return summary.get("hIoU") if summary else None  # value for Hydra sweepers


if __name__ == "__main__":
    from zegclip.hydra_flags import run

    run(main, "train")  # Hydra's flags, also `-m ... --cfg job` (per job)
