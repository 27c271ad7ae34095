"""Segment your own images: `python predict.py inputs=PATH [classes=[cat,dog]] [ckpt_path=CKPT]`.

CKPT: an official ZegCLIP .pth, a converted file, a zegclip .ckpt, or "shapes" (the bundled
shapes-world model, the default). Writes label PNGs, overlays with a legend and predictions.json
into the run folder; `python predict.py --help` lists every key. See README.md.
"""

import sys

import hydra
from omegaconf import DictConfig

import zegclip.engine.resolvers  # noqa: F401  (the ${zegclip.*} resolvers, before Hydra composes)

_exit_codes: list[int] = []


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from zegclip.apps.predict import predict
    from zegclip.engine import cli

    _exit_codes.append(cli.run(predict, cfg).exit_code)  # a user error: one line, exit code 2


if __name__ == "__main__":
    from zegclip.engine.hydra_flags import run

    run(main, "predict")  # Hydra's flags, also `-m ... --cfg job` (per job)
    sys.exit(max(_exit_codes, default=0))  # non-zero when a file could not be read
