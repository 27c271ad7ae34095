"""Export a trained checkpoint as a small, self-describing zegclip file.

    python -m zegclip.export RUN/checkpoints/best-step001500.ckpt OUT.pt [--include-clip]

Without ``--include-clip`` the file holds the prompts, the decoder, the architecture and the
vocabulary, and references the frozen CLIP weights by ``model.clip.weights`` (which must be a
file or ``zegclip:NAME`` available where the file is loaded). This is how the bundled shapes
model (``zegclip.load("shapes")``) was made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zegclip.model.checkpoint import load, save


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zegclip.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a zegclip Lightning .ckpt (or any file zegclip.load reads)")
    parser.add_argument("output", type=Path)
    parser.add_argument("--include-clip", action="store_true", help="store the frozen CLIP weights too")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.overwrite:
        parser.error(f"{args.output} exists; pass --overwrite to replace it")
    model = load(args.checkpoint)
    save(model, args.output, include_clip=args.include_clip, metadata={"exported_from": args.checkpoint.name})
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 2**20:.2f} MiB, CLIP {'included' if args.include_clip else 'referenced: ' + str(model.config.clip.weights)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
