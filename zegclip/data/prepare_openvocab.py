"""Preparation of the open-vocabulary benchmarks whose labels need converting: A-847 and PC-459.

Both end in the detectron2 / CAT-Seg layouts (16-bit TIFF labels, 65535 = ignore), so that data
prepared by those projects is read as it is. ``python -m zegclip.data.prepare ade847|context459``
runs these (docs/data.md; data/README.md). The facts (read from the peers' scripts, code our own):

* A-847 (ZegFormer, as CAT-Seg / SAN / FC-CLIP / ODISE): every image of ``index_ade20k.pkl``
  (``folder`` / ``filename``, split from the file name: ``ADE_val_*`` is validation) and its
  ``<name>_seg.png``, whose object class is ``R // 10 * 256 + G``; images whose short side
  exceeds 512 are resized so that it is 512 (long side ``round(long / short * 512)``; image
  bilinear, class map nearest, OpenCV); the 847 ADE object ids of ``vocabularies/ade847.json``
  map onto 0..846, every other id (and 0, unlabelled) onto 65535. Images are re-encoded as JPEG
  with Pillow's default quality (75), as the peers' scripts do.
* PC-459 (CAT-Seg ``prepare_pascal_context_459.py``, FC-CLIP): ``LabelMap - 1`` of every
  validation id's ``trainval/<id>.mat``, unlabelled 0 -> 65535.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from zegclip.common.errors import ImageReadError, InputNotFoundError
from zegclip.common.images import open_image
from zegclip.data.errors import DataError, PreparationError
from zegclip.data.io import RAW_IGNORE_16BIT
from zegclip.data.prepare import (
    CONTEXT_SOURCES_TREE,
    Report,
    _finish,
    _read_ids,
    _require,
    _write_list,
    load_context_mat,
    run_tasks,
    write_bytes,
    write_label_tiff,
)
from zegclip.data.vocabularies import load_vocabulary

# -- ADE20K-847 ----------------------------------------------------------------------------------
ADE_FULL = "ADE20K_2021_17_01"
ADE_INDEX = "index_ade20k.pkl"
ADE_MAX_SHORT_SIDE = 512
ADE_SPLITS = ("validation", "training")
ADE_OFFICIAL_COUNTS = {"validation": 2000, "training": 25574}
ADE847_SOURCES_TREE = f"""\
--src: the ADE20K full release extracted ({ADE_FULL}, or the folder holding it):
    {ADE_FULL}/{ADE_INDEX}                       (the index: 'folder', 'filename', 'objectnames', ...)
    {ADE_FULL}/images/ADE/validation/<scene>/<name>.jpg   (2,000 images)
    {ADE_FULL}/images/ADE/validation/<scene>/<name>_seg.png (RGB: class = R/10*256 + G)
    {ADE_FULL}/images/ADE/training/...                      (25,574 images; --splits training)
--dst: the data root; outputs go to <dst>/{ADE_FULL}/images_detectron2/<split>/<name>.jpg and
    <dst>/{ADE_FULL}/annotations_detectron2/<split>/<name>.tif (--dst may hold the release itself)"""


class _IndexUnpickler(pickle.Unpickler):
    """Reads ``index_ade20k.pkl`` (lists, dicts and numpy arrays) and refuses any other object."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" or (module, name) in (("collections", "OrderedDict"),):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"{module}.{name} is not expected in {ADE_INDEX} (numpy arrays and lists only)"
        )


def find_ade_full(src: str | Path) -> tuple[Path, Path]:
    """``(release root, index file)``: the folder ``folder`` entries are relative to (the parent of
    ``ADE20K_2021_17_01``) and the index inside it."""
    src = Path(src)
    for root in (src, src.parent):
        index = root / ADE_FULL / ADE_INDEX
        if index.is_file():
            return root, index
    raise PreparationError(f"{ADE_INDEX} not found under {src}\nExpected:\n{ADE847_SOURCES_TREE}")


def read_ade_index(path: str | Path) -> dict[str, Any]:
    """The index's ``folder`` and ``filename`` lists (and ``objectnames`` if present), checked."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            index = _IndexUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError) as e:
        raise PreparationError(
            f"cannot read {path}: {e} (expected the ADE20K full release's {ADE_INDEX})"
        ) from e
    if not isinstance(index, dict) or not {"folder", "filename"} <= set(index):
        keys = sorted(index) if isinstance(index, dict) else type(index).__name__
        raise PreparationError(f"{path}: expected a dict with 'folder' and 'filename' lists, got {keys}")
    folders, files = list(index["folder"]), list(index["filename"])
    if len(folders) != len(files) or not files:
        raise PreparationError(
            f"{path}: 'folder' ({len(folders)}) and 'filename' ({len(files)}) differ in length or are empty"
        )
    out: dict[str, Any] = {"folder": [str(f) for f in folders], "filename": [str(f) for f in files]}
    if "objectnames" in index:
        out["objectnames"] = [str(n) for n in index["objectnames"]]
    return out


def ade_split(filename: str) -> str:
    """``validation`` for ``ADE_val_*`` names, else ``training`` (the peers' rule)."""
    parts = filename.split("_")
    return "validation" if len(parts) > 1 and parts[1] == "val" else "training"


@cache
def ade847_ids() -> tuple[int, ...]:
    """The ADE20K-full object id of each of the 847 classes, in class order."""
    vocab = load_vocabulary("ade847")
    ids = tuple(int(i) for i in vocab.extra["ade20k_full_ids"])
    if len(ids) != len(vocab.classes) or len(set(ids)) != len(ids):
        raise PreparationError(f"{vocab.path}: 'ade20k_full_ids' must hold one distinct id per class")
    return ids


@cache
def ade847_lut() -> np.ndarray:
    """ADE object id -> A-847 class (uint16; 65535 for every other id). One entry past the
    largest id: every larger id reads it."""
    ids = ade847_ids()
    lut = np.full(max(ids) + 2, RAW_IGNORE_16BIT, dtype=np.uint16)
    lut[list(ids)] = np.arange(len(ids))
    return lut


def ade_class_mask(seg: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """The object-class map ``R // 10 * 256 + G`` (int32) of an ADE ``*_seg.png`` (RGB)."""
    if seg.ndim != 3 or seg.shape[2] < 3 or seg.dtype != np.uint8:
        raise PreparationError(f"{path}: expected an 8-bit RGB *_seg.png, got {seg.dtype} {seg.shape}")
    return (seg[..., 0].astype(np.int32) // 10) * 256 + seg[..., 1].astype(np.int32)


def ade_resized_size(height: int, width: int, max_short: int = ADE_MAX_SHORT_SIDE) -> tuple[int, int] | None:
    """``(height, width)`` with the short side ``max_short`` if it is longer, else None (the
    peers' rule, Python's ``round`` included)."""
    if width >= height > max_short:
        return max_short, round(width / float(height) * max_short)
    if height >= width > max_short:
        return round(height / float(width) * max_short), max_short
    return None


def _open(path: str | Path, what: str) -> Image.Image:
    try:
        return open_image(path, what)
    except (InputNotFoundError, ImageReadError) as e:
        raise PreparationError(str(e)) from e


def convert_ade847(image_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8, label uint16)`` of one A-847 sample, resized and mapped as the peers do."""
    image_path = Path(image_path)
    seg_path = image_path.with_name(image_path.stem + "_seg.png")
    im = _open(image_path, "ADE image")
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    image = np.asarray(im)
    seg_im = _open(seg_path, "ADE segmentation")
    if seg_im.mode != "RGB":
        raise PreparationError(
            f"{seg_path}: mode {seg_im.mode!r}, expected an RGB *_seg.png (class = R/10*256 + G)"
        )
    mask = ade_class_mask(np.asarray(seg_im), seg_path)
    if mask.shape != image.shape[:2]:
        raise PreparationError(
            f"{seg_path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {image_path} is "
            f"{image.shape[0]}x{image.shape[1]}: expected the same size"
        )
    size = ade_resized_size(*mask.shape)
    if size is not None:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    lut = ade847_lut()
    return image, lut[np.minimum(mask, len(lut) - 1)]


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes with Pillow's defaults (quality 75), as the peers' ``Image.save(<name>.jpg)``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG")
    return buf.getvalue()


def check_objectnames(objectnames: Sequence[str]) -> list[str]:
    """Compare the index's ``objectnames`` (id k is entry k - 1) with the 847 class names."""
    names = load_vocabulary("ade847").classes
    bad = [
        f"id {i}: index says {objectnames[i - 1] if 0 < i <= len(objectnames) else None!r}, expected {name!r}"
        for i, name in zip(ade847_ids(), names)
        if not (0 < i <= len(objectnames) and objectnames[i - 1].strip() == name)
    ]
    if not bad:
        return [f"{ADE_INDEX}: the 847 class ids match its objectnames"]
    return [f"{ADE_INDEX}: {len(bad)} of the 847 ids name another object (a different release?):"] + bad[:5]


def prepare_ade847(
    src: str | Path,
    dst: str | Path,
    overwrite: bool = False,
    workers: int = 1,
    splits: Sequence[str] = ("validation",),
) -> Report:
    """The ADE20K full release -> ``images_detectron2`` / ``annotations_detectron2`` (A-847)."""
    unknown = sorted(set(splits) - set(ADE_SPLITS))
    if unknown:
        raise PreparationError(f"unknown ADE split(s) {unknown}: expected {list(ADE_SPLITS)}")
    root, index_path = find_ade_full(src)
    index = read_ade_index(index_path)
    out = Path(dst) / ADE_FULL
    report = Report("ade847 (ADE20K full -> 847 classes, 16-bit TIFF)")
    for split in splits:
        entries = [(d, f) for d, f in zip(index["folder"], index["filename"]) if ade_split(f) == split]
        if not entries:
            raise PreparationError(
                f"{index_path} lists no {split} image (file names ADE_val_* / ADE_train_*)"
            )
        images = [root / d / f for d, f in entries]
        missing = [p for p in images if not p.is_file() or not p.with_name(p.stem + "_seg.png").is_file()]
        if missing:
            shown = "\n  ".join(f"{p} (+ {p.stem}_seg.png)" for p in missing[:10])
            raise PreparationError(
                f"{len(missing)} of the {len(images)} {split} images listed by {index_path} are missing "
                f"(image or *_seg.png):\n  {shown}\nExpected:\n{ADE847_SOURCES_TREE}"
            )
        stems = [p.stem for p in images]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise PreparationError(f"{index_path}: {split} file names {dup[:5]} appear more than once")
        tasks = [
            (
                "ade847",
                str(p),
                str(out / "images_detectron2" / split / p.name),
                str(out / "annotations_detectron2" / split / f"{p.stem}.tif"),
                overwrite,
            )
            for p in images
        ]
        run_tasks(tasks, report, workers, f"ADE20K {split}")
        report.notes.append(
            f"{split}: {len(images)} images (official: {ADE_OFFICIAL_COUNTS[split]:,}) -> "
            f"{out / 'annotations_detectron2' / split}"
        )
    if "objectnames" in index:
        report.notes += check_objectnames(index["objectnames"])
    report.notes.append(
        f"short side at most {ADE_MAX_SHORT_SIDE} (bilinear image, nearest label), as the peers prepare A-847"
    )
    return _finish(report)


# -- PASCAL Context 459 --------------------------------------------------------------------------
CONTEXT459_LABELS = Path("annotations_detectron2/pc459_val")
CONTEXT459_LIST = Path("ImageSets/SegmentationContext459/val.txt")
CONTEXT459_OFFICIAL = 5105
CATSEG_VAL_COUNT = 5104
"""CAT-Seg's ``datasets/pascalcontext_val.txt`` holds 5,104 ids (one fewer than VOC2010 val)."""


def convert_context459(label_map: np.ndarray) -> np.ndarray:
    """459-class ``LabelMap`` (0 = unlabelled, 1..459) -> uint16 ``LabelMap - 1``, 0 -> 65535."""
    out = label_map.astype(np.int32) - 1
    out[label_map == 0] = RAW_IGNORE_16BIT
    return out.astype(np.uint16)


def check_context459_labels(labels_txt: Path) -> list[str]:
    """Compare the release's ``labels.txt`` (``k: name``, 1-based) with the 459 class names."""
    names = load_vocabulary("pc459").classes
    found: dict[int, str] = {}
    for line in labels_txt.read_text(encoding="utf-8", errors="replace").splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            if key.strip().isdigit():
                found[int(key)] = value.strip()
    bad = [
        f"id {k}: {found[k]!r}, expected {name!r}"
        for k, name in enumerate(names, start=1)
        if k in found and found[k].replace(" ", "").lower() != name.replace(" ", "").lower()
    ]
    return (
        [f"{labels_txt}: {len(bad)} names differ from pc459.json:"] + bad[:5]
        if bad
        else [f"{labels_txt}: the 459 names match"]
    )


def prepare_context459(
    src: str | Path,
    dst: str | Path,
    overwrite: bool = False,
    workers: int = 1,
    val_list: str | Path | None = None,
) -> Report:
    """459-class ``.mat`` -> 16-bit ``pc459_val/<id>.tif`` and ``SegmentationContext459/val.txt``."""
    src = Path(src)
    mat_dir = src / "trainval" if (src / "trainval").is_dir() else src
    _require(mat_dir, "Context .mat folder", CONTEXT_SOURCES_TREE)
    voc = _require(Path(dst) / "VOCdevkit" / "VOC2010", "VOC 2010 folder", CONTEXT_SOURCES_TREE)
    main_val = voc / "ImageSets" / "Main" / "val.txt"
    list_src = Path(val_list) if val_list else main_val
    ids = sorted(set(_read_ids(list_src)))
    if not ids:
        raise PreparationError(f"{list_src} lists no id")
    no_mat = [i for i in ids if not (mat_dir / f"{i}.mat").is_file()]
    if no_mat:
        raise PreparationError(
            f"{len(no_mat)} of the {len(ids)} ids of {list_src} have no .mat in {mat_dir}, e.g. "
            f"{mat_dir / no_mat[0]}.mat\nExpected:\n{CONTEXT_SOURCES_TREE}"
        )
    images = {p.stem for p in (voc / "JPEGImages").glob("*.jpg")}
    no_image = [i for i in ids if i not in images]
    if no_image:
        raise PreparationError(
            f"{len(no_image)} PC-459 id(s) have no image in {voc / 'JPEGImages'}, e.g. {no_image[0]}.jpg "
            "(expected the VOC 2010 trainval images)"
        )
    report = Report("context459 (459-class .mat -> 16-bit TIFF)")
    tasks = [
        ("context459", str(mat_dir / f"{i}.mat"), str(voc / CONTEXT459_LABELS / f"{i}.tif"), overwrite)
        for i in ids
    ]
    run_tasks(tasks, report, workers, "Context .mat -> tif")
    _write_list(voc / CONTEXT459_LIST, ids, report, overwrite)
    report.notes.append(
        f"val.txt: {len(ids)} ids from {list_src} (VOC2010 val: {CONTEXT459_OFFICIAL:,}, the images PC-59, "
        f"SAN and FC-CLIP evaluate; CAT-Seg's pascalcontext_val.txt: {CATSEG_VAL_COUNT:,})"
    )
    if val_list and main_val.is_file():
        main = set(_read_ids(main_val))
        only_main, only_list = sorted(main - set(ids)), sorted(set(ids) - main)
        report.notes.append(
            f"compared with {main_val}: {len(only_main)} id(s) only there {only_main[:5]}, "
            f"{len(only_list)} only in {list_src.name} {only_list[:5]}"
        )
    for labels_txt in (src / "labels.txt", mat_dir / "labels.txt"):
        if labels_txt.is_file():
            report.notes += check_context459_labels(labels_txt)
            break
    return _finish(report)


def convert_task(task: tuple[Any, ...]) -> list[tuple[str, str]]:
    """One A-847 or PC-459 conversion (run by :func:`zegclip.data.prepare.run_tasks`)."""
    kind, overwrite = task[0], task[-1]
    try:
        if kind == "ade847":
            _, image_src, image_dst, label_dst, _ = task
            image, label = convert_ade847(image_src)
            return [
                (write_bytes(image_dst, encode_jpeg(image), overwrite), image_dst),
                (write_label_tiff(label_dst, label, overwrite), label_dst),
            ]
        _, src, dst, _ = task
        return [(write_label_tiff(dst, convert_context459(load_context_mat(src)), overwrite), dst)]
    except (DataError, ImageReadError):
        raise
    except (OSError, ValueError, cv2.error) as e:  # name the file whatever failed
        raise PreparationError(f"{kind}: cannot convert {task[1]}: {e}") from e
