"""What ``predict.py`` does: segment image files with any checkpoint and class names.

For each image the run folder gets ``labels/<name>.png`` (palette PNG, pixel value = class index),
``overlays/<name>.png`` (colours blended in, legend of the classes present) and one line of
``predictions.json`` (JSON Lines: file, size, classes present with their pixel share, the
precision used and why). Files that
cannot be read are reported, listed in ``failures.json`` and skipped; the others are processed.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from tqdm import tqdm

import zegclip
from zegclip.common.atomic import raise_write_error, write_text
from zegclip.common.class_names import split_names
from zegclip.common.errors import ConfigError, ImageReadError, InputError, InputNotFoundError
from zegclip.common.values import plain
from zegclip.model.inference import calibration

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
"""File types picked up when ``inputs`` is a folder (a file or a glob is taken as given)."""

console = Console()


@dataclass
class PredictSummary:
    """What a run did: the images segmented and the files that failed (with their error)."""

    output_dir: Path
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def collect_inputs(inputs: str | Sequence[str]) -> list[Path]:
    """Image files named by ``inputs``: a file, a folder (its image files, recursively), a glob
    pattern (``**`` recurses), or a list of these. Sorted, duplicates removed.

    Raises:
        ValueError: ``inputs`` is empty, or one entry matches nothing (named in the message).
    """
    if inputs is None or (not isinstance(inputs, str) and len(inputs) == 0) or inputs == "":
        raise InputError(
            "inputs is empty: give inputs=IMAGE, inputs=FOLDER or inputs='GLOB' (e.g. 'photos/*.jpg')"
        )
    entries = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs]
    found: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise InputError(
                    f"inputs: folder {entry!r} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        elif any(c in entry for c in "*?["):
            matches = sorted(
                Path(p) for p in glob.glob(os.path.expanduser(entry), recursive=True) if Path(p).is_file()
            )
            if not matches:
                raise InputNotFoundError(f"inputs: the pattern {entry!r} matches no file")
        else:
            raise InputNotFoundError(
                f"inputs: {entry!r} is neither a file, a folder nor a glob pattern that matches files; give "
                "an image, a folder of images or a quoted pattern (inputs='photos/*.jpg')"
            )
        found.extend(matches)
    unique = dict.fromkeys(p.resolve() for p in found)
    return sorted(unique)


def output_names(files: Sequence[Path]) -> dict[Path, str]:
    """A unique output name per input: its path below the inputs' common folder, without the
    suffix (``a/b.jpg`` -> ``a/b``); the suffix is kept (``b.jpg`` -> ``b_jpg``) where two
    files would otherwise share a name."""
    if not files:
        return {}
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    stems = {f: f.relative_to(root).with_suffix("").as_posix() for f in files}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {
        f: stem if counts[stem] == 1 else f"{stem}_{f.suffix.lstrip('.').lower()}"
        for f, stem in stems.items()
    }


def _device(name: str | None) -> str:
    if name:
        return str(name)
    return "cuda" if torch.cuda.is_available() else "cpu"


def predict(cfg: DictConfig) -> PredictSummary:
    """Segment every image of ``cfg.inputs``; write labels, overlays and ``predictions.json``."""
    out_dir = Path(cfg.paths.output_dir)
    files = collect_inputs(plain(cfg.get("inputs")))
    write_text(
        out_dir / "config_resolved.yaml",
        OmegaConf.to_yaml({k: plain(cfg[k]) for k in cfg if k != "hydra"}),
        what="resolved config",
    )
    console.print(f"[bold]run folder[/bold]: {out_dir}")
    model = zegclip.load(
        cfg.ckpt_path, device=_device(cfg.get("device")), precision=cfg.get("precision", "auto")
    )
    console.print(model.precision.line(), markup=False, highlight=False)
    precision = model.precision.to_dict()
    class_names = split_names(plain(cfg.get("classes"))) or list(model.metadata.get("class_names") or [])
    if not class_names:
        raise ConfigError(f"{cfg.ckpt_path} holds no vocabulary: give classes=[name,name,...]")
    seen, seen_bias = calibration(model.metadata, class_names, plain(cfg.get("seen")), cfg.get("seen_bias"))
    templates = plain(cfg.get("templates"))
    console.print(
        f"{len(files)} image(s), {len(class_names)} classes"
        + (f", seen-class offset -{seen_bias:g} on {len(seen)} classes" if seen and seen_bias else "")
    )

    summary = PredictSummary(output_dir=out_dir)
    names = output_names(files)
    records_path = out_dir / "predictions.json"
    with _Records(records_path) as records:
        for file in tqdm(files, desc="segmenting", unit="image", dynamic_ncols=True):
            try:
                prediction = model.predict(
                    file,
                    class_names,
                    seen=seen,
                    seen_bias=seen_bias,
                    mode=cfg.mode,
                    crop=cfg.get("crop"),
                    stride=cfg.get("stride"),
                    templates=templates,
                    window_batch=int(cfg.window_batch),
                )
            except (ImageReadError, OSError) as err:
                summary.failed[str(file)] = str(err)
                tqdm.write(f"skipped {file}: {err}")
                continue
            name = names[file]
            prediction.save(
                label=out_dir / "labels" / f"{name}.png",
                overlay=out_dir / "overlays" / f"{name}.png",
                alpha=float(cfg.alpha),
            )
            records.add({**prediction.to_dict(), "precision": precision})
            summary.written.append(str(file))
    _report(summary)
    return summary


def _report(summary: PredictSummary) -> None:
    out = summary.output_dir
    if summary.failed:
        _write_lines(out / "failures.json", ({"file": f, "error": e} for f, e in summary.failed.items()))
    console.print(
        f"[bold]segmented {len(summary.written)} image(s)[/bold]: labels/ overlays/ predictions.json in {out}"
    )
    if summary.failed:
        console.print(
            f"[bold red]{len(summary.failed)} file(s) could not be read[/bold red] (failures.json):"
        )
        for file, error in summary.failed.items():
            console.print(f"  {file}: {error}", markup=False, highlight=False, soft_wrap=True)


def _write_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows), what="failure list")


class _Records:
    """``predictions.json``, one JSON line per image as it is segmented (a crash keeps what was done);
    a failed write raises :class:`~zegclip.common.errors.WriteError` naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def __enter__(self) -> _Records:
        try:
            self._file = open(self.path, "w")  # noqa: SIM115 (closed by __exit__)
        except OSError as err:
            raise_write_error(self.path, err, what="predictions")
        return self

    def add(self, row: dict[str, Any]) -> None:
        line = json.dumps(row) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as err:
            raise_write_error(self.path, err, what="predictions", needed=len(line.encode()))

    def __exit__(self, *exc: Any) -> None:
        try:
            self._file.close()
        except OSError as err:
            if exc[0] is None:
                raise_write_error(self.path, err, what="predictions")
