"""Write a checkpoint as a self-describing zegclip file, or as an ONNX graph for deployment.

    python -m zegclip.export OFFICIAL.pth OUT.ckpt                 # convert an official release
    python -m zegclip.export RUN/checkpoints/last.ckpt OUT.pt [--include-clip]
    python -m zegclip.export CHECKPOINT --onnx OUT.onnx [--classes "cat,dog,grass"] [--seen dog]

Official ZegCLIP ``.pth`` files are converted: the architecture is inferred from the tensor shapes
and the embedded mmseg config, the vocabulary and test settings are kept, the weights get our
names (the whole CLIP is stored), and the official tensors that never take part in any
computation are dropped and listed.

Small file: without ``--include-clip`` it holds the prompts, the decoder, the architecture and the
vocabulary, and references the frozen CLIP weights by ``model.clip.weights`` (which must be a
file or ``zegclip:NAME`` available where the file is loaded). This is how the bundled shapes
model (``zegclip.load("shapes")``) was made.

ONNX: the whole-image forward for a fixed vocabulary (text embeddings baked in): input
``pixel_values`` (B, 3, H, W) float32, normalised (ImageNet mean/std on 0-255 RGB), batch, height
and width dynamic; output ``scores`` (B, C, H, W), the calibrated class scores (argmax over C =
segmentation). The vocabulary and preprocessing constants are in the file's metadata. Matches
PyTorch to 1e-4 (tested with onnxruntime). Evaluation's protocol (resize to short side = crop,
sliding windows) is left to the caller.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zegclip.model.checkpoint import load, save
from zegclip.model.inference import SEEN_BIAS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zegclip.export",
        description=__doc__.split("\n\n")[0],
        epilog="Checkpoint: a zegclip Lightning .ckpt, a converted or official file, or 'shapes' (bundled).",
    )
    parser.add_argument(
        "checkpoint", help="a zegclip Lightning .ckpt (or any file zegclip.load reads, or 'shapes')"
    )
    parser.add_argument(
        "output", type=Path, nargs="?", help="the small zegclip file to write (not with --onnx)"
    )
    parser.add_argument("--include-clip", action="store_true", help="store the frozen CLIP weights too")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="weights of the written file: auto (default) = fp32, which the file keeps wherever it is loaded "
        "(zegclip.load then picks that machine's precision); bf16 / fp16 halve "
        "a checkpoint file (not --onnx)",
    )
    onnx = parser.add_argument_group("ONNX export")
    onnx.add_argument(
        "--onnx", type=Path, metavar="OUT.onnx", help="write an ONNX graph of the whole-image scores"
    )
    onnx.add_argument("--classes", help="comma-separated class names (default: the checkpoint's vocabulary)")
    onnx.add_argument(
        "--seen",
        help="comma-separated seen classes (names or indices) whose scores get -seen-bias "
        "(default: the checkpoint's own calibration on its own vocabulary, else none)",
    )
    onnx.add_argument(
        "--seen-bias",
        type=float,
        default=None,
        help=f"seen-class offset (default: the checkpoint's, else {SEEN_BIAS:g})",
    )
    onnx.add_argument(
        "--templates", default=None, help="single | multi (default: the checkpoint's templates)"
    )
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    args = parser.parse_args(argv)

    if args.onnx is not None:
        if args.output is not None or args.include_clip:
            parser.error("--onnx writes one file: give no OUTPUT and no --include-clip with it")
        return _export_onnx(parser, args)
    if args.output is None:
        parser.error("give OUTPUT (a small zegclip file) or --onnx OUT.onnx")
    if args.output.exists() and not args.overwrite:
        parser.error(f"{args.output} exists; pass --overwrite to replace it")
    model = load(args.checkpoint, precision=_precision(args.precision))
    print(model.precision.line())
    official = _official_checkpoint(args.checkpoint)
    include_clip = args.include_clip or official is not None  # an official file names no CLIP weights
    save(
        model,
        args.output,
        include_clip=include_clip,
        metadata={
            "exported_from": Path(args.checkpoint).name,
            "weights_precision": model.precision.precision,
        },
    )
    if official is not None:
        _describe_conversion(model, official)
    size = args.output.stat().st_size
    print(
        f"wrote {args.output} ({size / 2**20:.2f} MiB, CLIP "
        f"{'included' if include_clip else 'referenced: ' + str(model.config.clip.weights)})"
    )
    return 0


def _precision(requested: str) -> Any:
    """The written file's weights: ``auto`` keeps fp32 (the file runs elsewhere, and the machine
    that loads it picks its own precision); bf16 / fp16 only store smaller weights."""
    from zegclip.model.precision import PrecisionChoice

    if requested == "auto":
        why = "auto: the file keeps fp32 weights; the machine that loads it picks its precision"
        return PrecisionChoice("auto", "fp32", "cpu", why)
    return PrecisionChoice(requested, requested, "cpu", "as requested, for the file's weights")


def _official_checkpoint(path: str) -> dict | None:
    """The checkpoint's content if it is an official ZegCLIP release, else None."""
    import torch

    from zegclip.model.official import is_official_checkpoint

    if not Path(path).is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain torch file (our own formats are read by load())
        return None
    return obj if is_official_checkpoint(obj) else None


def _describe_conversion(model: Any, official: dict) -> None:
    from zegclip.model.official import convert_official

    config, _, metadata, dropped = convert_official(official)
    print(f"  architecture: {config.to_dict()}")
    print(
        f"  classes: {len(metadata['class_names'])} ({len(metadata['unseen'])} unseen), setting: "
        f"{metadata['setting']}"
    )
    print(f"  learnable parameters: {sum(p.numel() for p in model.trainable_parameters()):,}")
    print(
        f"  dropped {len(dropped)} unused official tensors "
        f"({sum(t.numel() for t in dropped.values()):,} values):"
    )
    for key in sorted(dropped):
        print(f"    {key}")


def _export_onnx(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from zegclip.common.class_names import split_names
    from zegclip.model.deploy import export_onnx
    from zegclip.model.inference import calibration

    if args.onnx.exists() and not args.overwrite:
        parser.error(f"{args.onnx} exists; pass --overwrite to replace it")
    if args.precision not in ("auto", "fp32"):
        parser.error(
            f"--precision {args.precision}: the ONNX graph is float32 (give --precision auto or fp32)"
        )
    model = load(args.checkpoint, precision=_precision(args.precision))
    print(model.precision.line())
    names = split_names(args.classes) if args.classes else model.metadata.get("class_names")
    if not names:
        parser.error(f"{args.checkpoint} holds no vocabulary: give --classes 'name,name,...'")
    try:
        seen, seen_bias = calibration(model.metadata, names, args.seen, args.seen_bias)
    except ValueError as err:
        parser.error(str(err))
    templates = args.templates or model.metadata.get("templates") or "single"
    export_onnx(model, args.onnx, names, seen, seen_bias, templates, opset=args.opset)
    size = sum(p.stat().st_size for p in args.onnx.parent.glob(args.onnx.name + "*"))
    offset = (
        "-" + format(seen_bias, "g") + " on " + str(len(seen)) + " classes" if seen and seen_bias else "none"
    )
    print(
        f"wrote {args.onnx} ({size / 2**20:.2f} MiB): {len(names)} classes, seen offset {offset}; "
        "input pixel_values (B, 3, H, W) normalised, output scores (B, C, H, W)"
    )
    return 0


if __name__ == "__main__":
    from zegclip.engine import cli

    sys.exit(cli.run(main))  # a user error (a missing checkpoint, ...): one line, exit code 2
