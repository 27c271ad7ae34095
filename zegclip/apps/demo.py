"""Web demo (Gradio): upload an image, type class names, see the segmentation.

    python -m zegclip.demo                                   # the bundled shapes model, shapes examples
    python -m zegclip.demo ckpt_path=ZegCLIP_coco_inductive.pth --port 7860 --device cuda

Serves on http://127.0.0.1:7860 (``--host 0.0.0.0`` to share on the network). Runs offline:
analytics are off and the page's scripts and fonts come from the local Gradio package.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
from PIL import Image

import zegclip
from zegclip.common.atomic import write_file
from zegclip.common.class_names import resolve_seen, split_names
from zegclip.common.errors import ImageReadError
from zegclip.model.inference import SEEN_BIAS, calibration
from zegclip.model.prediction import Prediction

SHARES_ID = "zegclip-shares"
"""HTML id of the class-share table (``data-count`` rows, each with ``data-class`` / ``data-share``)."""


def shares_table(prediction: Prediction) -> str:
    """The classes present, largest share first, as an HTML table."""
    rows = "".join(
        f'<tr data-class="{html.escape(name)}" data-share="{share:.6f}"><td>{html.escape(name)}</td>'
        f'<td style="text-align:right">{100 * share:.2f}%</td></tr>'
        for name, share in prediction.shares().items()
    )
    return (
        f'<table id="{SHARES_ID}" data-count="{len(prediction.shares())}"><thead><tr><th>class</th>'
        '<th style="text-align:right">pixel share</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


class Segmenter:
    """The demo's callback: one model, any image and class names."""

    def __init__(self, model: zegclip.ZegCLIP) -> None:
        self.model = model

    def __call__(
        self,
        image: str | np.ndarray | Image.Image | None,
        classes: str,
        seen: str,
        seen_bias: float,
        mode: str,
    ) -> tuple[Image.Image, str]:
        import gradio as gr

        if image is None:
            raise gr.Error("Upload an image (or pick an example) first.")
        names = split_names(classes)
        if not names:
            raise gr.Error("Type at least one class name (comma-separated).")
        try:
            seen_idx = resolve_seen(split_names(seen), names) if split_names(seen) else None
            prediction = self.model.predict(
                image, names, seen=seen_idx, seen_bias=float(seen_bias), mode=mode
            )
        except (ValueError, ImageReadError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from err
        return prediction.overlay(), shares_table(prediction)


def shapes_examples(folder: Path, count: int = 4) -> list[Path]:
    """Write ``count`` fresh shapes-world images (a seed the bundled model never trained on),
    enlarged 4x, to ``folder``; returns their paths."""
    from zegclip.data.shapes import ShapesWorld

    world = ShapesWorld("compositional", seed=4242)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image, _ = world.sample(index)
        path = folder / f"shapes_{index}.png"
        big = Image.fromarray(np.repeat(np.repeat(image, 4, 0), 4, 1))
        write_file(path, lambda f, im=big: im.save(f, format="PNG"), what="demo example", fsync=False)
        paths.append(path)
    return paths


def default_calibration(model: zegclip.ZegCLIP) -> tuple[str, float]:
    """The seen-class field and offset the page starts with: the checkpoint's own calibration on its
    own vocabulary (:func:`zegclip.model.inference.calibration`, as ``eval.py`` and ``predict.py``),
    else no seen classes and the paper's offset for the classes a user types."""
    names = list(model.metadata.get("class_names") or [])
    seen, bias = calibration(model.metadata, names)
    if seen and bias > 0:
        return ", ".join(names[i] for i in seen), bias
    return "", SEEN_BIAS


def build_demo(model: zegclip.ZegCLIP, examples: Sequence[str | Path] = (), title: str = "ZegCLIP") -> Any:
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    names = list(model.metadata.get("class_names") or [])
    seen_default, bias_default = default_calibration(model)
    segment = Segmenter(model)
    with gr.Blocks(title=f"{title}: zero-shot segmentation") as demo:
        gr.Markdown(
            f"# {html.escape(title)}: segment any image with any class names\n"
            "Upload an image or pick an example, type the class names (comma-separated) and press "
            "**Segment**. Every pixel gets one of the names; the legend and the table give each "
            "class's share of the pixels. *Seen classes* (optional) get their score lowered by the "
            "seen bias, the paper's calibration toward classes unseen in training."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    label="image",
                    type="filepath",
                    image_mode=None,
                    sources=["upload"],
                    elem_id="zegclip-image",
                )
                classes = gr.Textbox(
                    label="class names (comma-separated)", value=", ".join(names), elem_id="zegclip-classes"
                )
                with gr.Row():
                    seen = gr.Textbox(
                        label="seen classes (optional, comma-separated)",
                        value=seen_default,
                        elem_id="zegclip-seen",
                    )
                    seen_bias = gr.Slider(
                        0.0, 0.5, value=bias_default, step=0.01, label="seen bias", elem_id="zegclip-bias"
                    )
                mode = gr.Radio(["slide", "whole"], value="slide", label="inference", elem_id="zegclip-mode")
                button = gr.Button("Segment", variant="primary", elem_id="zegclip-run")
            with gr.Column():
                # no buttons: they would sit on the legend's first row (right-click saves the PNG)
                result = gr.Image(
                    label="segmentation (legend: class, pixel share)",
                    type="pil",
                    format="png",
                    interactive=False,
                    buttons=[],
                    elem_id="zegclip-overlay",
                )
                table = gr.HTML(elem_id="zegclip-table")
        inputs = [image, classes, seen, seen_bias, mode]
        button.click(segment, inputs=inputs, outputs=[result, table], api_name="segment")
        if examples:
            default_classes = ", ".join(names)
            gr.Examples(
                [[str(p), default_classes] for p in examples], inputs=[image, classes], label="examples"
            )
    return demo


def _argv_with_keys(argv: Sequence[str]) -> list[str]:
    """Accept Hydra-style ``key=value`` words too (``ckpt_path=X`` -> ``--ckpt_path X``)."""
    out: list[str] = []
    for word in argv:
        if not word.startswith("-") and "=" in word:
            key, value = word.split("=", 1)
            out += [f"--{key}", value]
        else:
            out.append(word)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zegclip.demo",
        description="Web demo: upload an image, type class names, see the segmentation with a legend and "
        "class shares.",
        epilog="Keys also work as key=value, e.g. "
        "`python -m zegclip.demo ckpt_path=ZegCLIP_voc_inductive.pth`.",
    )
    parser.add_argument(
        "--ckpt_path",
        "--ckpt-path",
        default="shapes",
        help="an official .pth, a converted file, a zegclip .ckpt, or 'shapes' (bundled, the default)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 for the network)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (default: bf16-mixed where the device computes bf16 natively, else fp32) | fp32 | "
        "bf16-mixed | bf16 | fp16",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="a folder of example images (default: fresh shapes-world images for the shapes model)",
    )
    args = parser.parse_args(_argv_with_keys(sys.argv[1:] if argv is None else argv))

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = zegclip.load(args.ckpt_path, device=device, precision=args.precision)
    print(model.precision.line())
    if args.examples is not None:
        examples: list[Path] = sorted(
            p for p in args.examples.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
        )
    elif model.metadata.get("dataset") == "shapes":
        examples = shapes_examples(
            Path(tempfile.gettempdir()) / "zegclip_demo_examples"
        )  # same files each start
    else:
        examples = []
    title = (
        "ZegCLIP (bundled shapes-world model)"
        if args.ckpt_path == "shapes"
        else f"ZegCLIP ({Path(args.ckpt_path).name})"
    )
    demo = build_demo(model, examples, title=title)
    allowed = [str(p.parent) for p in examples]
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        ssr_mode=False,
        allowed_paths=allowed,
        footer_links=[],
        show_error=True,
    )
    return 0


if __name__ == "__main__":
    from zegclip.engine import cli

    sys.exit(cli.run(main))  # a user error (a missing checkpoint, ...): one line, exit code 2
