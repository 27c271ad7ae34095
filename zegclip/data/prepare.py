"""Dataset preparation: convert the released annotations into the layouts the datasets read.

    python -m zegclip.data.prepare voc     --src <SBD dir> --dst <data root>
    python -m zegclip.data.prepare coco    --dst <data root> [--src <stuffthingmaps dir>]
    python -m zegclip.data.prepare context --src <459-class .mat dir> --dst <data root>
    python -m zegclip.data.prepare ade847  --src <dir with ADE20K_2021_17_01> --dst <data root>
    python -m zegclip.data.prepare context459 --src <459-class .mat dir> --dst <data root>
    python -m zegclip.data.prepare check   voc|coco|context|ade150|ade847|context459|voc20b --root <data root>

* voc: SBD ``benchmark_RELEASE/dataset/cls/*.mat`` (``GTcls.Segmentation``, ids 0..20) ->
  ``VOCdevkit/VOC2012/SegmentationClassAug/<id>.png``, and ``ImageSets/Segmentation/aug.txt`` =
  (SBD train + val) - VOC train - VOC val (9,118 ids on the full data).
* coco: COCO-Stuff ``stuffthingmaps`` PNGs (ids 0..181, 255) -> ``<id>_labelTrainIds.png``
  (171 train ids 0..170, 255) in ``coco_stuff164k/annotations/{train2017,val2017}``.
* context: 459-class ``trainval/*.mat`` (``LabelMap``) -> ``VOCdevkit/VOC2010/
  SegmentationClassContext/<id>.png`` (59 kept ids -> 1..59, all else 0) and
  ``ImageSets/SegmentationContext/{train,val}.txt`` from VOC2010 ``ImageSets/Main``.
* ade847: ADE20K full (``index_ade20k.pkl``, ``<name>.jpg`` + ``<name>_seg.png``, class = R/10*256
  + G) -> ``ADE20K_2021_17_01/{images,annotations}_detectron2/validation/<name>.{jpg,tif}``: short
  side at most 512 (bilinear image, nearest label), the 847 classes in the field's order, 16-bit
  TIFF with 65535 = ignore, as detectron2 / CAT-Seg / FC-CLIP prepare it.
* context459: 459-class ``trainval/*.mat`` -> ``VOCdevkit/VOC2010/annotations_detectron2/
  pc459_val/<id>.tif`` (16-bit, ``LabelMap - 1``, unlabelled 0 -> 65535) for the validation ids,
  and ``ImageSets/SegmentationContext459/val.txt``.
* check: read every sample of a prepared dataset and report every problem (ade150 and voc20b need
  no preparation: they read the released files).

Every run is idempotent: an existing output with the same content is skipped, one with
different content is an error naming the file (unless ``--overwrite``); outputs are written to a
temporary file and renamed. A summary is printed at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, features
from tqdm import tqdm

from zegclip.common.atomic import write_file
from zegclip.common.errors import ImageReadError
from zegclip.data.classes import CONTEXT59_CLASSES
from zegclip.data.errors import DataError, PreparationError
from zegclip.data.io import read_label

# COCO-Stuff: raw ids 0..181 of which these 11 never occur; the rest map in order onto 0..170.
COCO_UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
# PASCAL Context: the 59 kept ids of the 459-class release (labels.txt, 1-based), in order.
CONTEXT59_IDS = (
    2,
    9,
    18,
    19,
    22,
    23,
    25,
    31,
    33,
    34,
    44,
    45,
    46,
    59,
    65,
    68,
    72,
    80,
    85,
    98,
    104,
    105,
    113,
    115,
    144,
    158,
    159,
    162,
    187,
    189,
    207,
    220,
    232,
    258,
    259,
    260,
    284,
    295,
    296,
    308,
    324,
    326,
    347,
    349,
    354,
    355,
    360,
    366,
    368,
    397,
    415,
    416,
    420,
    424,
    427,
    440,
    445,
    454,
    458,
)
CONTEXT_NUM_RAW = 459
SBD_NUM_CLASSES = 20

VOC_SOURCES_TREE = """\
--src: SBD, i.e. benchmark.tgz extracted (the folder benchmark_RELEASE, or its parent):
    benchmark_RELEASE/dataset/cls/<id>.mat   (GTcls.Segmentation)
    benchmark_RELEASE/dataset/train.txt, val.txt
--dst: the data root, holding the VOC 2012 trainval tar extracted:
    VOCdevkit/VOC2012/JPEGImages, SegmentationClass, ImageSets/Segmentation/{train,val}.txt"""
COCO_SOURCES_TREE = """\
--src (default <dst>/coco_stuff164k/annotations): stuffthingmaps_trainval2017.zip extracted:
    train2017/<id>.png, val2017/<id>.png   (raw ids 0..181, 255 unlabeled)
--dst: the data root; outputs go to \
<dst>/coco_stuff164k/annotations/{train2017,val2017}/<id>_labelTrainIds.png
    (put the images in <dst>/coco_stuff164k/images/{train2017,val2017}/)"""
CONTEXT_SOURCES_TREE = """\
--src: the 459-class release (trainval.tar.gz extracted): trainval/<id>.mat with LabelMap \
(or the folder of .mat files)
--dst: the data root, holding the VOC 2010 trainval tar extracted:
    VOCdevkit/VOC2010/JPEGImages, ImageSets/Main/{train,val}.txt"""


# -- label tables --------------------------------------------------------------------------------
def coco_stuff_lut() -> np.ndarray:
    """raw stuffthingmaps id -> train id (int16, 256 entries; -1 = id that must not occur)."""
    lut = np.full(256, -1, dtype=np.int16)
    kept = [i for i in range(182) if i not in COCO_UNUSED_IDS]
    lut[kept] = np.arange(len(kept))
    lut[255] = 255
    return lut


def context59_lut() -> np.ndarray:
    """459-class id (0..459) -> Context 59 label (0 = background, 1..59), int16."""
    lut = np.zeros(CONTEXT_NUM_RAW + 1, dtype=np.int16)
    lut[list(CONTEXT59_IDS)] = np.arange(1, len(CONTEXT59_IDS) + 1)
    return lut


# -- reading inputs ------------------------------------------------------------------------------
def _unwrap(obj: Any) -> Any:
    """Unwrap the size-1 object / struct arrays scipy.io.loadmat wraps MATLAB structs in."""
    while isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.flat[0]
    return obj


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as e:  # scipy raises several types for corrupt files
        raise PreparationError(f"cannot read MATLAB file {path}: {e}") from e


def load_sbd_mat(path: str | Path) -> np.ndarray:
    """Read ``GTcls.Segmentation`` of an SBD ``cls/*.mat`` file as a uint8 (H, W) array."""
    path = Path(path)
    mat = _loadmat(path)
    if "GTcls" not in mat:
        raise PreparationError(f"{path}: no 'GTcls' struct (expected an SBD cls/*.mat file)")
    gt = _unwrap(mat["GTcls"])
    try:
        seg = gt["Segmentation"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise PreparationError(f"{path}: 'GTcls' has no 'Segmentation' field") from e
    seg = np.asarray(_unwrap(seg))
    while seg.ndim > 2 and seg.shape[0] == 1:
        seg = seg[0]
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise PreparationError(
            f"{path}: GTcls.Segmentation is {seg.dtype} {seg.shape}, expected a 2-D integer map"
        )
    bad = np.unique(seg[(seg < 0) | (seg > SBD_NUM_CLASSES)])
    if bad.size:
        raise PreparationError(f"{path}: GTcls.Segmentation holds values {bad[:10].tolist()}, expected 0..20")
    return seg.astype(np.uint8)


def load_context_mat(path: str | Path) -> np.ndarray:
    """Read ``LabelMap`` (459-class ids, 0 = unlabeled) of a PASCAL Context ``.mat`` file."""
    path = Path(path)
    mat = _loadmat(path)
    if "LabelMap" not in mat:
        raise PreparationError(f"{path}: no 'LabelMap' array (expected a 459-class PASCAL Context .mat file)")
    lm = np.asarray(_unwrap(mat["LabelMap"]))
    if lm.ndim != 2 or not np.issubdtype(lm.dtype, np.integer):
        raise PreparationError(f"{path}: LabelMap is {lm.dtype} {lm.shape}, expected a 2-D integer map")
    bad = np.unique(lm[(lm < 0) | (lm > CONTEXT_NUM_RAW)])
    if bad.size:
        raise PreparationError(
            f"{path}: LabelMap holds values {bad[:10].tolist()}, expected 0..{CONTEXT_NUM_RAW}"
        )
    return lm.astype(np.int32)


def convert_coco_stuff(raw: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Map a stuffthingmaps array (0..181 minus unused ids, 255) to train ids (uint8)."""
    if raw.ndim != 2:
        raise PreparationError(f"{path}: label map of shape {raw.shape}, expected (H, W)")
    if raw.dtype != np.uint8:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise PreparationError(f"{path}: values outside 0..255 in a COCO-Stuff map")
        raw = raw.astype(np.uint8)
    out = coco_stuff_lut()[raw]
    if (out < 0).any():
        bad = np.unique(raw[out < 0])
        raise PreparationError(
            f"{path}: raw ids {bad[:10].tolist()} are not COCO-Stuff ids "
            f"(expected 0..181 without {list(COCO_UNUSED_IDS)}, and 255)"
        )
    return out.astype(np.uint8)


def convert_context(label_map: np.ndarray) -> np.ndarray:
    """Map 459-class ids to Context 59 labels (uint8: 0 = background, 1..59)."""
    return context59_lut()[label_map].astype(np.uint8)


# -- writing outputs -----------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` encodes into memory (a label map is small; Pillow's TIFF encoder wants a seekable
    file), then :func:`zegclip.common.atomic.write_file` puts the bytes in place."""
    buffer = io.BytesIO()
    write(buffer)
    # no fsync: thousands of small files a rerun rewrites idempotently (5 ms each on ext4)
    write_file(path, buffer.getvalue(), what="prepared file", fsync=False)


def write_label_png(path: str | Path, label: np.ndarray, overwrite: bool = False) -> str:
    """Write a uint8 label PNG; returns ``written``, ``unchanged``, ``overwritten`` or ``conflict``.

    An existing file holding the same pixels is left alone (``unchanged``); one holding other
    pixels is left alone and reported as ``conflict`` unless ``overwrite``.
    """
    return _write_label(path, np.ascontiguousarray(label, dtype=np.uint8), overwrite, "PNG", {})


TIFF_OPTIONS = {"compression": "tiff_adobe_deflate"} if features.check("libtiff") else {}
"""16-bit label TIFFs are deflate-compressed (lossless, any TIFF reader) where Pillow has libtiff."""


def write_label_tiff(path: str | Path, label: np.ndarray, overwrite: bool = False) -> str:
    """Write a 16-bit label TIFF (A-847, PC-459: ids above 255, 65535 = ignore); same rules as
    :func:`write_label_png`."""
    return _write_label(path, np.ascontiguousarray(label, dtype=np.uint16), overwrite, "TIFF", TIFF_OPTIONS)


def _write_label(
    path: str | Path, label: np.ndarray, overwrite: bool, fmt: str, options: dict[str, Any]
) -> str:
    path = Path(path)
    status = "written"
    if path.exists():
        try:
            existing = read_label(path)
        except (DataError, ImageReadError):
            existing = None
        if existing is not None and existing.shape == label.shape and np.array_equal(existing, label):
            return "unchanged"
        if not overwrite:
            return "conflict"
        status = "overwritten"
    _atomic_write(path, lambda f: Image.fromarray(label).save(f, format=fmt, **options))
    return status


def write_bytes(path: str | Path, data: bytes, overwrite: bool = False) -> str:
    """Write an encoded file (a re-encoded JPEG) with the same idempotency rules, comparing bytes."""
    path = Path(path)
    status = "written"
    if path.exists():
        if path.read_bytes() == data:
            return "unchanged"
        if not overwrite:
            return "conflict"
        status = "overwritten"
    _atomic_write(path, lambda f: f.write(data))
    return status


def write_text(path: str | Path, text: str, overwrite: bool = False) -> str:
    """Write a text file with the same idempotency rules as :func:`write_label_png`."""
    path = Path(path)
    status = "written"
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return "unchanged"
        if not overwrite:
            return "conflict"
        status = "overwritten"
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return status


# -- running -------------------------------------------------------------------------------------
@dataclass
class Report:
    """Outcome of a preparation step."""

    title: str
    counts: Counter = field(default_factory=Counter)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    keys: tuple[str, ...] = ("written", "unchanged", "overwritten", "conflict")

    def add(self, status: str, path: Path | str) -> None:
        self.counts[status] += 1
        if status == "conflict":
            self.conflicts.append(str(path))

    def summary(self) -> str:
        parts = ", ".join(f"{k} {self.counts[k]}" for k in self.keys)
        lines = [f"{self.title}: {parts}"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def _convert_one(task: tuple[Any, ...]) -> list[tuple[str, str]]:
    """Run one conversion task; returns the (status, output path) of every file it writes."""
    kind = task[0]
    if kind in ("ade847", "context459"):
        from zegclip.data.prepare_openvocab import convert_task

        return convert_task(task)
    _, src, dst, overwrite = task
    if kind == "sbd":
        label = load_sbd_mat(src)
    elif kind == "coco":
        label = convert_coco_stuff(read_label(src), src)
    elif kind == "context":
        label = convert_context(load_context_mat(src))
    else:  # pragma: no cover
        raise ValueError(kind)
    return [(write_label_png(dst, label, overwrite), dst)]


def run_conversions(
    kind: str, pairs: Sequence[tuple[Path, Path]], report: Report, overwrite: bool, workers: int, desc: str
) -> None:
    """Convert every (src, dst) pair with a progress bar, in ``workers`` processes."""
    run_tasks([(kind, str(s), str(d), overwrite) for s, d in pairs], report, workers, desc)


def run_tasks(tasks: Sequence[tuple[Any, ...]], report: Report, workers: int, desc: str) -> None:
    """Run :func:`_convert_one` over ``tasks`` with a progress bar, in ``workers`` processes."""
    if workers <= 1 or len(tasks) < 2:
        results: Iterable[list[tuple[str, str]]] = map(_convert_one, tasks)
        for written in tqdm(results, total=len(tasks), desc=desc, unit="file"):
            for status, dst in written:
                report.add(status, dst)
        return
    with ProcessPoolExecutor(max_workers=workers) as ex:
        results = ex.map(_convert_one, tasks, chunksize=max(1, min(256, len(tasks) // (workers * 8) or 1)))
        for written in tqdm(results, total=len(tasks), desc=desc, unit="file"):
            for status, dst in written:
                report.add(status, dst)


def _write_list(path: Path, ids: Sequence[str], report: Report, overwrite: bool) -> None:
    report.add(write_text(path, "".join(f"{i}\n" for i in ids), overwrite), path)


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise PreparationError(f"list file not found: {path}")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _require(path: Path, what: str, tree: str) -> Path:
    if not path.exists():
        raise PreparationError(f"{what} not found: {path}\nExpected:\n{tree}")
    return path


def _finish(report: Report) -> Report:
    if report.conflicts:
        shown = "\n  ".join(report.conflicts[:10])
        more = f"\n  ... and {len(report.conflicts) - 10} more" if len(report.conflicts) > 10 else ""
        raise PreparationError(
            f"{len(report.conflicts)} existing output(s) differ from what this conversion produces and were "
            f"left untouched:\n  {shown}{more}\nRe-run with --overwrite to replace them.\n{report.summary()}"
        )
    return report


# -- VOC + SBD -----------------------------------------------------------------------------------
def find_sbd(src: Path) -> Path:
    """The SBD ``dataset`` folder (holding ``cls/``, ``train.txt``, ``val.txt``) under ``src``."""
    for cand in (src / "benchmark_RELEASE" / "dataset", src / "dataset", src):
        if (cand / "cls").is_dir():
            return cand
    raise PreparationError(
        f"SBD not found under {src} (no benchmark_RELEASE/dataset/cls)\nExpected:\n{VOC_SOURCES_TREE}"
    )


def prepare_voc(src: str | Path, dst: str | Path, overwrite: bool = False, workers: int = 1) -> Report:
    """SBD -> ``SegmentationClassAug`` PNGs and ``aug.txt`` (without VOC train / val ids)."""
    sbd = find_sbd(Path(src))
    voc = _require(Path(dst) / "VOCdevkit" / "VOC2012", "VOC 2012 folder", VOC_SOURCES_TREE)
    sets = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = _read_ids(sets / "train.txt"), _read_ids(sets / "val.txt")
    sbd_ids = _read_ids(sbd / "train.txt") + _read_ids(sbd / "val.txt")
    mats = sorted((sbd / "cls").glob("*.mat"))
    if not mats:
        raise PreparationError(f"no .mat file in {sbd / 'cls'}\nExpected:\n{VOC_SOURCES_TREE}")
    mat_ids = {m.stem for m in mats}
    aug = sorted(set(sbd_ids) - set(voc_train) - set(voc_val))
    missing = [i for i in aug if i not in mat_ids]
    if missing:
        raise PreparationError(
            f"{len(missing)} SBD list id(s) have no cls/<id>.mat, e.g. {sbd / 'cls' / missing[0]}.mat"
        )
    images = {p.stem for p in (voc / "JPEGImages").glob("*.jpg")}
    no_image = [i for i in aug if i not in images]
    if no_image:
        raise PreparationError(
            f"{len(no_image)} aug id(s) have no image in {voc / 'JPEGImages'}, e.g. {no_image[0]}.jpg "
            "(expected the VOC 2012 trainval images, which include every SBD image)"
        )
    report = Report("voc (SBD -> SegmentationClassAug)")
    pairs = [(m, voc / "SegmentationClassAug" / f"{m.stem}.png") for m in mats]
    run_conversions("sbd", pairs, report, overwrite, workers, "SBD .mat -> png")
    _write_list(sets / "aug.txt", aug, report, overwrite)
    report.notes += [
        f"{len(mats)} SBD labels in {voc / 'SegmentationClassAug'}",
        f"aug.txt: {len(aug)} ids (official: 9,118); train: VOC train {len(voc_train)} (official 1,464) "
        f"+ aug = {len(voc_train) + len(aug)} (official 10,582); val {len(voc_val)} (official 1,449)",
    ]
    return _finish(report)


# -- COCO-Stuff ----------------------------------------------------------------------------------
COCO_SPLITS = ("train2017", "val2017")


def prepare_coco(
    src: str | Path | None, dst: str | Path, overwrite: bool = False, workers: int = 1
) -> Report:
    """stuffthingmaps PNGs -> ``*_labelTrainIds.png`` under ``<dst>/coco_stuff164k/annotations``."""
    base = Path(dst) / "coco_stuff164k"
    src_dir = Path(src) if src is not None else base / "annotations"
    _require(src_dir, "stuffthingmaps folder", COCO_SOURCES_TREE)
    report = Report("coco (stuffthingmaps -> labelTrainIds)")
    found = False
    for split in COCO_SPLITS:
        d = src_dir / split
        if not d.is_dir():
            report.notes.append(f"{split}: no folder {d}, skipped")
            continue
        raws = sorted(p for p in d.glob("*.png") if not p.name.endswith("_labelTrainIds.png"))
        if not raws:
            raise PreparationError(f"no raw stuffthingmaps PNG in {d}\nExpected:\n{COCO_SOURCES_TREE}")
        found = True
        out = base / "annotations" / split
        pairs = [(p, out / f"{p.stem}_labelTrainIds.png") for p in raws]
        run_conversions("coco", pairs, report, overwrite, workers, f"COCO-Stuff {split}")
        official = 118287 if split == "train2017" else 5000
        report.notes.append(f"{split}: {len(raws)} maps (official: {official:,}) -> {out}")
        if not (base / "images" / split).is_dir():
            report.notes.append(f"{split}: images still missing: put them in {base / 'images' / split}")
    if not found:
        raise PreparationError(
            f"neither {src_dir / 'train2017'} nor {src_dir / 'val2017'} exists"
            f"\nExpected:\n{COCO_SOURCES_TREE}"
        )
    return _finish(report)


# -- PASCAL Context ------------------------------------------------------------------------------
_LABEL_LINE = re.compile(r"^\s*(\d+)\s*[:\s]\s*(.+?)\s*$")


def check_context_labels(labels_txt: Path, class_names: Sequence[str]) -> list[str]:
    """Compare the release's ``labels.txt`` with the 59 kept ids; returns mismatch notes."""
    names: dict[int, str] = {}
    for line in labels_txt.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LABEL_LINE.match(line)
        if m:
            names[int(m.group(1))] = m.group(2).strip()
    notes = []
    for raw_id, expected in zip(CONTEXT59_IDS, class_names):
        got = names.get(raw_id)
        if got is not None and got.replace(" ", "").lower() != expected.replace(" ", "").lower():
            notes.append(f"labels.txt: id {raw_id} is {got!r}, expected {expected!r}")
    return notes


def prepare_context(
    src: str | Path,
    dst: str | Path,
    overwrite: bool = False,
    workers: int = 1,
    train_list: str | Path | None = None,
    val_list: str | Path | None = None,
) -> Report:
    """459-class ``.mat`` -> 59-class PNGs and the train / val lists."""
    src = Path(src)
    mat_dir = src / "trainval" if (src / "trainval").is_dir() else src
    _require(mat_dir, "Context .mat folder", CONTEXT_SOURCES_TREE)
    mats = sorted(mat_dir.glob("*.mat"))
    if not mats:
        raise PreparationError(f"no .mat file in {mat_dir}\nExpected:\n{CONTEXT_SOURCES_TREE}")
    voc = _require(Path(dst) / "VOCdevkit" / "VOC2010", "VOC 2010 folder", CONTEXT_SOURCES_TREE)
    main = voc / "ImageSets" / "Main"
    train_src = Path(train_list) if train_list else main / "train.txt"
    val_src = Path(val_list) if val_list else main / "val.txt"
    mat_ids = {m.stem for m in mats}
    train = sorted(i for i in _read_ids(train_src) if i in mat_ids)
    val = sorted(i for i in _read_ids(val_src) if i in mat_ids)
    if not train and not val:
        raise PreparationError(f"no id of {train_src} or {val_src} has a .mat file in {mat_dir}")
    images = {p.stem for p in (voc / "JPEGImages").glob("*.jpg")}
    no_image = [i for i in train + val if i not in images]
    if no_image:
        raise PreparationError(
            f"{len(no_image)} Context id(s) have no image in {voc / 'JPEGImages'}, e.g. {no_image[0]}.jpg "
            "(expected the VOC 2010 trainval images)"
        )
    report = Report("context (459-class .mat -> 59-class png)")
    pairs = [(m, voc / "SegmentationClassContext" / f"{m.stem}.png") for m in mats]
    run_conversions("context", pairs, report, overwrite, workers, "Context .mat -> png")
    sets = voc / "ImageSets" / "SegmentationContext"
    _write_list(sets / "train.txt", train, report, overwrite)
    _write_list(sets / "val.txt", val, report, overwrite)
    report.notes += [
        f"{len(mats)} labels in {voc / 'SegmentationClassContext'}",
        f"train.txt {len(train)} ids (official 4,998), val.txt {len(val)} ids (official 5,105), from {main}",
    ]
    for labels_txt in (src / "labels.txt", mat_dir / "labels.txt"):
        if labels_txt.is_file():
            report.notes += check_context_labels(labels_txt, CONTEXT59_CLASSES) or [
                f"{labels_txt}: the 59 ids match"
            ]
            break
    return _finish(report)


# -- check ---------------------------------------------------------------------------------------
LAYOUTS = {
    "voc": "VOCDataset",
    "coco": "COCOStuffDataset",
    "context": "ContextDataset",
    "ade150": "ADE150Dataset",
    "ade847": "ADE847Dataset",
    "context459": "Context459Dataset",
    "voc20b": "VOC20bDataset",
}
"""The layouts ``check`` reads (the CLI's choices; training builds datasets from the Hydra configs)."""
CHECK_SPLITS = {"ade847": ("val",), "context459": ("val",), "voc20b": ("val",)}
"""The splits ``check`` reads by default where not train and val (evaluation benchmarks)."""


def check_dataset(
    layout: str, root: str | Path, splits: Sequence[str] | None = None, workers: int = 4
) -> Report:
    """Read every sample of ``layout`` under ``root`` (no cache); raise listing every problem found.

    ``splits`` defaults to train and val, or val alone for the evaluation benchmarks (``CHECK_SPLITS``).
    """
    from zegclip.data import datasets
    from zegclip.data.verify import verify_samples

    if layout not in LAYOUTS:
        raise PreparationError(f"check: unknown layout {layout!r}, expected one of {sorted(LAYOUTS)}")
    report = Report(f"check {layout}", keys=("ok",))
    problems: list[str] = []
    for split in splits or CHECK_SPLITS.get(layout, ("train", "val")):
        ds = getattr(datasets, LAYOUTS[layout])(root, split)
        try:
            report.counts["ok"] += verify_samples(ds, f"{layout} {split}", workers=workers, use_cache=False)
        except DataError as e:
            problems.append(str(e))
        report.notes.append(f"{split}: {len(ds)} samples")
    if problems:
        raise PreparationError("\n".join(problems))
    return report


# -- CLI -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The CLI (over 60 lines only because it declares six subcommands' arguments, one after another)."""
    parser = argparse.ArgumentParser(
        prog="python -m zegclip.data.prepare",
        description="Convert released annotations into the layouts zegclip reads (see data/README.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dst", required=True, type=Path, help="data root (paths.data_dir)")
        p.add_argument(
            "--overwrite", action="store_true", help="replace existing outputs whose content differs"
        )
        p.add_argument(
            "--workers",
            type=int,
            default=min(8, os.cpu_count() or 1),
            help="processes (default: %(default)s)",
        )

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "voc",
        help="SBD .mat -> SegmentationClassAug + aug.txt",
        description=VOC_SOURCES_TREE,
        formatter_class=fmt,
    )
    p.add_argument("--src", required=True, type=Path, help="benchmark_RELEASE or the folder containing it")
    common(p)
    p = sub.add_parser(
        "coco",
        help="stuffthingmaps -> *_labelTrainIds.png",
        description=COCO_SOURCES_TREE,
        formatter_class=fmt,
    )
    p.add_argument("--src", type=Path, default=None, help="folder with train2017/ val2017/ raw PNGs")
    common(p)
    p = sub.add_parser(
        "context",
        help="459-class .mat -> 59-class PNGs + lists",
        description=CONTEXT_SOURCES_TREE,
        formatter_class=fmt,
    )
    p.add_argument(
        "--src", required=True, type=Path, help="folder with trainval/*.mat (the 459-class release)"
    )
    p.add_argument(
        "--train-list",
        type=Path,
        default=None,
        help="ids of the train split (default VOC2010 ImageSets/Main/train.txt)",
    )
    p.add_argument(
        "--val-list",
        type=Path,
        default=None,
        help="ids of the val split (default VOC2010 ImageSets/Main/val.txt)",
    )
    common(p)
    from zegclip.data.prepare_openvocab import ADE847_SOURCES_TREE, ADE_SPLITS

    p = sub.add_parser(
        "ade847",
        help="ADE20K full -> 847-class 16-bit TIFFs (short side <= 512)",
        description=ADE847_SOURCES_TREE,
        formatter_class=fmt,
    )
    p.add_argument("--src", required=True, type=Path, help="ADE20K_2021_17_01 or the folder containing it")
    p.add_argument(
        "--splits", nargs="+", default=["validation"], choices=ADE_SPLITS, help="(default: validation)"
    )
    common(p)
    p = sub.add_parser(
        "context459",
        help="459-class .mat -> 16-bit TIFFs of the validation ids + list",
        description=CONTEXT_SOURCES_TREE,
        formatter_class=fmt,
    )
    p.add_argument(
        "--src", required=True, type=Path, help="folder with trainval/*.mat (the 459-class release)"
    )
    p.add_argument(
        "--val-list",
        type=Path,
        default=None,
        help="ids to convert (default VOC2010 ImageSets/Main/val.txt, 5,105; "
        "CAT-Seg's pascalcontext_val.txt: 5,104)",
    )
    common(p)
    p = sub.add_parser("check", help="read every sample of a prepared dataset")
    p.add_argument("layout", choices=tuple(LAYOUTS))
    p.add_argument("--root", required=True, type=Path, help="data root (paths.data_dir)")
    p.add_argument(
        "--splits",
        nargs="+",
        default=None,
        choices=("train", "val"),
        help="(default: train and val; val for ade847, context459, voc20b)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.time()
    try:
        if args.command == "voc":
            report = prepare_voc(args.src, args.dst, args.overwrite, args.workers)
        elif args.command == "coco":
            report = prepare_coco(args.src, args.dst, args.overwrite, args.workers)
        elif args.command == "context":
            report = prepare_context(
                args.src, args.dst, args.overwrite, args.workers, args.train_list, args.val_list
            )
        elif args.command in ("ade847", "context459"):
            from zegclip.data import prepare_openvocab as ov

            if args.command == "ade847":
                report = ov.prepare_ade847(args.src, args.dst, args.overwrite, args.workers, args.splits)
            else:
                report = ov.prepare_context459(
                    args.src, args.dst, args.overwrite, args.workers, args.val_list
                )
        else:
            report = check_dataset(args.layout, args.root, args.splits)
    except (DataError, ImageReadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"done in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
