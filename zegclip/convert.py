"""Convert an official ZegCLIP checkpoint into a self-describing zegclip file.

    python -m zegclip.convert OFFICIAL.pth OUT.ckpt

The output holds the architecture (inferred from tensor shapes and the embedded mmseg
config), the vocabulary and test settings, and the weights under our names; it loads with
``zegclip.load(OUT.ckpt)``. Tensors that never take part in any computation are dropped and
listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from zegclip.model.checkpoint import build_from_state, convert_official, is_official_checkpoint, save


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zegclip.convert", description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="official ZegCLIP .pth (mmseg format)")
    parser.add_argument("output", type=Path, help="where to write the converted checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)

    if not args.official.is_file():
        parser.error(f"input file not found: {args.official}")
    if args.output.exists() and not args.overwrite:
        parser.error(f"{args.output} exists; pass --overwrite to replace it")
    checkpoint = torch.load(args.official, map_location="cpu", weights_only=True)
    if not is_official_checkpoint(checkpoint):
        parser.error(f"{args.official} is not an official ZegCLIP checkpoint (no state_dict with backbone.*/decode_head.*)")
    config, state, metadata, dropped = convert_official(checkpoint)
    model = build_from_state(config, state, metadata, source=str(args.official))
    save(model, args.output, include_clip=True)

    trainable = sum(p.numel() for p in model.trainable_parameters())
    print(f"wrote {args.output}")
    print(f"  architecture: {config.to_dict()}")
    print(f"  classes: {len(metadata['class_names'])} ({len(metadata['unseen'])} unseen), setting: {metadata['setting']}")
    print(f"  learnable parameters: {trainable:,}")
    print(f"  dropped {len(dropped)} unused official tensors ({sum(t.numel() for t in dropped.values()):,} values):")
    for key in sorted(dropped):
        print(f"    {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
