"""Train ZegCLIP: `python train.py [dataset=voc|coco|context|custom|shapes] [setting=...] [key=value ...]`.

With no arguments it trains on the embedded shapes world (no download needed). See README.md.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zegclip.runner import train

    summary = train(cfg)
    return summary.get("hIoU") if summary else None  # value for Hydra sweepers


if __name__ == "__main__":
    main()
