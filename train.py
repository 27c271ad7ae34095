"""Train ZegCLIP: `python train.py [dataset=voc|coco|context|custom|shapes] [setting=...] [key=value ...]`.

With no arguments it trains on the embedded shapes world (no download needed). See README.md.
"""

import hydra
from omegaconf import DictConfig

import zegclip.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zegclip import cli
    from zegclip.runner import train

    summary = cli.run(train, cfg)  # a user error, an interrupt, a failed write: one line and an exit code
    return summary.get("hIoU") if summary else None  # value for Hydra sweepers


if __name__ == "__main__":
    main()
