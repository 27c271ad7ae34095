"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH dataset=voc`.

PATH: a zegclip Lightning .ckpt, an official ZegCLIP .pth, a converted file, or "shapes"
(the bundled shapes-world model, the default). Writes metrics.json into the run folder.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from zegclip.runner import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
