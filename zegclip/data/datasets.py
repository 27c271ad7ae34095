"""Datasets reading the real on-disk layouts: VOC 2012 (+ SBD aug), COCO-Stuff 164K, PASCAL
Context 59, and a ``custom`` folder layout; for the open-vocabulary table also ADE20K-150,
ADE20K-847, PASCAL Context 459 and VOC-20b (the detectron2 / CAT-Seg layouts).

All datasets emit the dataset's 0-based class ids (0..C-1) with ``IGNORE_INDEX`` (65535) = ignore,
as uint16 arrays (labels on disk keep their own ignore value: 255 in 8-bit maps). They check at
construction that the root, the list files and every listed file exist; at read time that the
image decodes, that the label holds only known values and that both have the same size. Nothing
is skipped silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from zegclip.common.errors import ConfigError
from zegclip.data.errors import (
    ClassSplitError,
    DataRootError,
    EmptySplitError,
    MissingFileError,
    SizeMismatchError,
    SplitListError,
)
from zegclip.data.io import (
    RAW_IGNORE_8BIT,
    RAW_IGNORE_16BIT,
    decode_label,
    make_label_lut,
    read_label,
    read_sample_image,
)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image / label pair on disk."""

    name: str
    image_path: Path
    label_path: Path


def _list_names(folder: Path) -> set[str]:
    with os.scandir(folder) as it:
        return {e.name for e in it}


def _read_list(path: Path, what: str, expected_tree: str) -> list[str]:
    if not path.is_file():
        raise DataRootError(f"{what} list file not found: {path}\nExpected layout:\n{expected_tree}")
    ids = [line.strip().split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise EmptySplitError(f"{what} list file {path} is empty: expected one image id per line")
    return ids


def _require_dir(path: Path, what: str, expected_tree: str, hint: str = "") -> None:
    if not path.is_dir():
        msg = f"{what} not found: {path}\nExpected layout:\n{expected_tree}"
        raise DataRootError(msg + (f"\n{hint}" if hint else ""))


def _check_exist(samples: Sequence[Sample], split_desc: str) -> None:
    """Raise naming the missing images / labels of a sample list (one directory listing per folder)."""
    listings: dict[Path, set[str]] = {}
    missing: list[str] = []
    for s in samples:
        for kind, p in (("image", s.image_path), ("label", s.label_path)):
            names = listings.get(p.parent)
            if names is None:
                names = _list_names(p.parent) if p.parent.is_dir() else set()
                listings[p.parent] = names
            if p.name not in names:
                missing.append(f"{kind} {p}")
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise MissingFileError(
            f"{len(missing)} file(s) listed by {split_desc} do not exist:\n  {shown}{more}"
        )


class SegmentationDataset(Dataset):
    """Base class: a list of :class:`Sample` s, a label-decoding table and an optional transform.

    ``dataset[i]`` returns ``{"image", "label", "meta"}``. Without a transform, ``image`` is the
    uint8 RGB array (H, W, 3) and ``label`` the uint16 class-id array (H, W); with one (see
    :mod:`zegclip.data.transforms`) ``image`` is a float tensor (3, h, w) and ``label`` a long
    tensor. ``meta`` holds ``name``, ``image_path``, ``label_path``, ``ori_size`` (H, W of the
    original image) and, with a transform, ``img_size`` (h, w of the image before padding).

    Subclasses set the class attributes and build ``samples`` from their layout; a generated
    dataset may instead override :meth:`__len__` and :meth:`load_sample`.
    """

    layout: ClassVar[str] = ""
    #: number of classes the layout's labels encode (None: taken from the class list)
    NUM_CLASSES: ClassVar[int | None] = None
    #: whether raw 0 is a background to ignore and raw k is class k-1
    REDUCE_ZERO_LABEL: ClassVar[bool | None] = None
    #: the ignore value of the label maps on disk (255 in 8-bit maps, 65535 in 16-bit ones)
    RAW_IGNORE: ClassVar[int] = RAW_IGNORE_8BIT
    #: with reduce_zero_label, the class raw 0 becomes instead of ignore (VOC-20b's background)
    BACKGROUND_CLASS: ClassVar[int | None] = None
    EXPECTED_TREE: ClassVar[str] = ""

    def __init__(
        self,
        samples: Sequence[Sample],
        num_classes: int,
        reduce_zero_label: bool,
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.num_classes = int(num_classes)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.lut = self.label_lut(self.num_classes, self.reduce_zero_label)
        self.transform = transform

    @classmethod
    def label_lut(cls, num_classes: int, reduce_zero_label: bool) -> np.ndarray:
        """This layout's raw-value -> class-id table (raises ``ValueError`` if the classes do not fit)."""
        return make_label_lut(num_classes, reduce_zero_label, cls.RAW_IGNORE, cls.BACKGROUND_CLASS)

    @classmethod
    def _resolve_label_args(cls, num_classes: int | None, reduce_zero_label: bool | None) -> tuple[int, bool]:
        if cls.NUM_CLASSES is not None:
            if num_classes is not None and num_classes != cls.NUM_CLASSES:
                raise ClassSplitError(
                    f"{cls.layout}: labels encode {cls.NUM_CLASSES} classes, got num_classes={num_classes}"
                )
            num_classes = cls.NUM_CLASSES
        if num_classes is None:
            raise ClassSplitError(f"{cls.layout}: num_classes is required")
        if cls.REDUCE_ZERO_LABEL is not None:
            if reduce_zero_label is not None and bool(reduce_zero_label) != cls.REDUCE_ZERO_LABEL:
                raise ClassSplitError(
                    f"{cls.layout}: its label maps need reduce_zero_label={cls.REDUCE_ZERO_LABEL} "
                    f"(got {reduce_zero_label}); changing it would shift every class id"
                )
            reduce_zero_label = cls.REDUCE_ZERO_LABEL
        return num_classes, bool(reduce_zero_label)

    def __len__(self) -> int:
        return len(self.samples)

    def load_sample(self, index: int) -> dict[str, Any]:
        """Read and decode sample ``index``: uint8 RGB image, uint16 class-id label, meta."""
        s = self.samples[index]
        image = read_sample_image(s.image_path)
        label = decode_label(read_label(s.label_path), self.lut, s.label_path)
        if image.shape[:2] != label.shape:
            raise SizeMismatchError(
                f"image {s.image_path} is {image.shape[0]}x{image.shape[1]} (HxW) but its label "
                f"{s.label_path} is {label.shape[0]}x{label.shape[1]}: expected the same size"
            )
        meta = {
            "name": s.name,
            "image_path": str(s.image_path),
            "label_path": str(s.label_path),
            "ori_size": (int(image.shape[0]), int(image.shape[1])),
        }
        return {"image": image, "label": label, "meta": meta}

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        if self.transform is None:
            return sample
        out = self.transform(image=sample["image"], label=sample["label"])
        meta = dict(sample["meta"], img_size=tuple(int(v) for v in out["img_size"]))
        image = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        label = torch.from_numpy(out["label"].astype(np.int64))
        return {"image": image, "label": label, "meta": meta}

    def set_random_seed(self, seed: int) -> None:
        """Re-seed the transform's augmentation stream (no-op for deterministic transforms)."""
        fn = getattr(self.transform, "set_random_seed", None)
        if fn is not None:
            fn(seed)


class VOCDataset(SegmentationDataset):
    """PASCAL VOC 2012 with the SBD augmented set.

    train = ``train.txt`` (labels in ``SegmentationClass``) + ``aug.txt`` (``SegmentationClassAug``);
    val and test = ``val.txt``. Raw labels: 0 background -> ignore, 1..20 -> 0..19, 255 -> ignore.
    """

    layout = "voc"
    NUM_CLASSES = 20
    REDUCE_ZERO_LABEL = True
    BASE = Path("VOCdevkit/VOC2012")
    EXPECTED_TREE = """\
<root>/VOCdevkit/VOC2012/
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png        (VOC 2012 release; palette PNGs, 0..20 and 255)
    SegmentationClassAug/<id>.png     (python -m zegclip.data.prepare voc)
    ImageSets/Segmentation/train.txt  (1,464 ids)
    ImageSets/Segmentation/val.txt    (1,449 ids)
    ImageSets/Segmentation/aug.txt    (9,118 ids; python -m zegclip.data.prepare voc)"""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
        use_aug: bool = True,
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        if split not in SPLITS:
            raise ConfigError(f"voc: unknown split {split!r}, expected one of {SPLITS}")
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        base = root / self.BASE
        _require_dir(base, "VOC 2012 folder", self.EXPECTED_TREE)
        sets = base / "ImageSets" / "Segmentation"
        hint = (
            "Create it with: python -m zegclip.data.prepare voc "
            "--src <dir with benchmark_RELEASE> --dst <root>"
        )
        if split == "train":
            parts = [("train", "SegmentationClass")] + ([("aug", "SegmentationClassAug")] if use_aug else [])
        else:
            parts = [("val", "SegmentationClass")]
        samples: list[Sample] = []
        seen_ids: dict[str, str] = {}
        for list_name, label_dir in parts:
            if list_name == "aug":
                if not (sets / "aug.txt").is_file():
                    raise DataRootError(
                        f"aug list file not found: {sets / 'aug.txt'}\n{hint}"
                        f"\nExpected layout:\n{self.EXPECTED_TREE}"
                    )
                _require_dir(base / label_dir, "SBD label folder", self.EXPECTED_TREE, hint)
            else:
                _require_dir(base / label_dir, "label folder", self.EXPECTED_TREE)
            ids = _read_list(sets / f"{list_name}.txt", f"voc {list_name}", self.EXPECTED_TREE)
            for i in ids:
                if i in seen_ids:
                    raise SplitListError(
                        f"id {i} appears in both {seen_ids[i]}.txt and {list_name}.txt under {sets}: "
                        "expected aug.txt to exclude VOC train and val ids (regenerate it with prepare voc)"
                    )
                seen_ids[i] = list_name
                samples.append(Sample(i, base / "JPEGImages" / f"{i}.jpg", base / label_dir / f"{i}.png"))
        if split == "train":
            val_ids = set(_read_list(sets / "val.txt", "voc val", self.EXPECTED_TREE))
            leaked = sorted(set(seen_ids) & val_ids)
            if leaked:
                raise SplitListError(
                    f"{len(leaked)} VOC val id(s) (e.g. {leaked[:5]}) appear in the training lists "
                    f"under {sets}: expected aug.txt without val images (regenerate it with prepare voc)"
                )
        _check_exist(samples, f"voc {split} ({', '.join(p for p, _ in parts)}.txt)")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


class COCOStuffDataset(SegmentationDataset):
    """COCO-Stuff 164K with 171 ``*_labelTrainIds.png`` ids (0..170, 255 = ignore).

    train = ``train2017``, val and test = ``val2017``; the sample list is every ``*.jpg`` of the
    image folder, sorted.
    """

    layout = "coco"
    NUM_CLASSES = 171
    REDUCE_ZERO_LABEL = False
    BASE = Path("coco_stuff164k")
    EXPECTED_TREE = """\
<root>/coco_stuff164k/
    images/train2017/<id>.jpg                       (118,287 images)
    images/val2017/<id>.jpg                         (5,000 images)
    annotations/train2017/<id>_labelTrainIds.png    (python -m zegclip.data.prepare coco)
    annotations/val2017/<id>_labelTrainIds.png"""
    FOLDERS: ClassVar[Mapping[str, str]] = {"train": "train2017", "val": "val2017", "test": "val2017"}
    LABEL_SUFFIX = "_labelTrainIds.png"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        if split not in self.FOLDERS:
            raise ConfigError(f"coco: unknown split {split!r}, expected one of {tuple(self.FOLDERS)}")
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        base = root / self.BASE
        _require_dir(base, "COCO-Stuff folder", self.EXPECTED_TREE)
        folder = self.FOLDERS[split]
        img_dir, ann_dir = base / "images" / folder, base / "annotations" / folder
        _require_dir(img_dir, "image folder", self.EXPECTED_TREE)
        hint = "Create the *_labelTrainIds.png files with: python -m zegclip.data.prepare coco --dst <root>"
        _require_dir(ann_dir, "annotation folder", self.EXPECTED_TREE, hint)
        stems = sorted(n[:-4] for n in _list_names(img_dir) if n.endswith(".jpg"))
        if not stems:
            raise EmptySplitError(f"coco {split}: no *.jpg image in {img_dir}")
        samples = [Sample(s, img_dir / f"{s}.jpg", ann_dir / f"{s}{self.LABEL_SUFFIX}") for s in stems]
        ann_names = _list_names(ann_dir)
        if not any(n.endswith(self.LABEL_SUFFIX) for n in ann_names):
            raise MissingFileError(f"no *{self.LABEL_SUFFIX} file in {ann_dir}\n{hint}")
        _check_exist(samples, f"coco {split} (images in {img_dir})")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


class ContextDataset(SegmentationDataset):
    """PASCAL Context 59: raw 0 (background) -> ignore, 1..59 -> 0..58. val and test = ``val.txt``."""

    layout = "context"
    NUM_CLASSES = 59
    REDUCE_ZERO_LABEL = True
    BASE = Path("VOCdevkit/VOC2010")
    EXPECTED_TREE = """\
<root>/VOCdevkit/VOC2010/
    JPEGImages/<id>.jpg
    SegmentationClassContext/<id>.png         (python -m zegclip.data.prepare context; 0..59)
    ImageSets/SegmentationContext/train.txt   (4,998 ids)
    ImageSets/SegmentationContext/val.txt     (5,105 ids)"""
    LISTS: ClassVar[Mapping[str, str]] = {"train": "train", "val": "val", "test": "val"}

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        if split not in self.LISTS:
            raise ConfigError(f"context: unknown split {split!r}, expected one of {tuple(self.LISTS)}")
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        base = root / self.BASE
        _require_dir(base, "VOC 2010 folder", self.EXPECTED_TREE)
        hint = (
            "Create it with: python -m zegclip.data.prepare context "
            "--src <dir with the 459-class .mat files> --dst <root>"
        )
        _require_dir(base / "SegmentationClassContext", "Context label folder", self.EXPECTED_TREE, hint)
        list_path = base / "ImageSets" / "SegmentationContext" / f"{self.LISTS[split]}.txt"
        if not list_path.is_file():
            raise DataRootError(
                f"context list file not found: {list_path}\n{hint}\nExpected layout:\n{self.EXPECTED_TREE}"
            )
        ids = _read_list(list_path, f"context {self.LISTS[split]}", self.EXPECTED_TREE)
        samples = [
            Sample(i, base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClassContext" / f"{i}.png")
            for i in ids
        ]
        _check_exist(samples, f"context {split} ({list_path.name})")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


class CustomDataset(SegmentationDataset):
    """A user's own data: a folder of images, a folder of label PNGs, optionally a list file.

    Paths are relative to ``root`` (or absolute) and may contain ``{split}``. The label of image
    ``<stem><img_suffix>`` is ``<stem><seg_suffix>`` in ``ann_dir``. Labels hold class ids 0..C-1
    and 255 (or, with ``reduce_zero_label``, 0 = ignore and 1..C).
    """

    layout = "custom"
    EXPECTED_TREE = """\
<root>/
    images/<split>/<stem>.jpg        (img_dir, default 'images/{split}')
    labels/<split>/<stem>.png        (ann_dir, default 'labels/{split}'; single-channel ids)
    splits/<split>.txt               (optional split_file: one stem per line)
    classes.txt                      (class names, one per line)"""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = False,
        img_dir: str = "images/{split}",
        ann_dir: str = "labels/{split}",
        split_file: str | None = None,
        img_suffix: str = ".jpg",
        seg_suffix: str = ".png",
        test_split: str = "val",
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        folder_split = test_split if split == "test" else split

        def resolve(p: str) -> Path:
            q = Path(p.format(split=folder_split))
            return q if q.is_absolute() else root / q

        images, labels = resolve(img_dir), resolve(ann_dir)
        _require_dir(images, "image folder", self.EXPECTED_TREE)
        _require_dir(labels, "label folder", self.EXPECTED_TREE)
        if split_file:
            stems = _read_list(resolve(split_file), f"custom {split}", self.EXPECTED_TREE)
        else:
            stems = sorted(n[: -len(img_suffix)] for n in _list_names(images) if n.endswith(img_suffix))
            if not stems:
                raise EmptySplitError(f"custom {split}: no *{img_suffix} image in {images}")
        samples = [Sample(s, images / f"{s}{img_suffix}", labels / f"{s}{seg_suffix}") for s in stems]
        _check_exist(samples, f"custom {split} ({images})")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


class VOC20bDataset(VOCDataset):
    """VOC-20b: PASCAL VOC 2012 with the background kept as class 20 (CAT-Seg's ``prepare_voc.py``).

    The VOC tree and lists of :class:`VOCDataset` (val and test = ``val.txt``, 1,449 images).
    Raw labels: 1..20 -> 0..19, 0 (background) -> 20, 255 -> ignore.
    """

    layout = "voc20b"
    NUM_CLASSES = 21
    BACKGROUND_CLASS = 20


def _stems(folder: Path, suffix: str) -> list[str]:
    return sorted(n[: -len(suffix)] for n in _list_names(folder) if n.endswith(suffix))


class ADE150Dataset(SegmentationDataset):
    """ADE20K-150 (SceneParsing, ``ADEChallengeData2016``): raw 0 -> ignore, 1..150 -> 0..149.

    train = ``training`` (20,210 images), val and test = ``validation`` (2,000); the sample list is
    every ``*.jpg`` of the image folder, sorted. The annotations are read as released (no
    preparation): the same values as detectron2's ``annotations_detectron2`` (raw - 1, 0 -> 255).
    """

    layout = "ade150"
    NUM_CLASSES = 150
    REDUCE_ZERO_LABEL = True
    BASE = Path("ADEChallengeData2016")
    EXPECTED_TREE = """\
<root>/ADEChallengeData2016/              (ADEChallengeData2016.zip extracted)
    images/training/<id>.jpg              (20,210 images)
    images/validation/<id>.jpg            (2,000 images)
    annotations/training/<id>.png         (uint8: 0 = unlabelled, 1..150 = classes)
    annotations/validation/<id>.png"""
    FOLDERS: ClassVar[Mapping[str, str]] = {"train": "training", "val": "validation", "test": "validation"}

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        if split not in self.FOLDERS:
            raise ConfigError(
                f"{self.layout}: unknown split {split!r}, expected one of {tuple(self.FOLDERS)}"
            )
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        base = root / self.BASE
        _require_dir(base, "ADEChallengeData2016 folder", self.EXPECTED_TREE)
        folder = self.FOLDERS[split]
        img_dir, ann_dir = base / "images" / folder, base / "annotations" / folder
        _require_dir(img_dir, "image folder", self.EXPECTED_TREE)
        _require_dir(ann_dir, "annotation folder", self.EXPECTED_TREE)
        stems = _stems(img_dir, ".jpg")
        if not stems:
            raise EmptySplitError(
                f"{self.layout} {split}: no *.jpg image in {img_dir}\nExpected layout:\n{self.EXPECTED_TREE}"
            )
        samples = [Sample(s, img_dir / f"{s}.jpg", ann_dir / f"{s}.png") for s in stems]
        _check_exist(samples, f"{self.layout} {split} (images in {img_dir})")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


class ADE847Dataset(SegmentationDataset):
    """ADE20K-847 (ADE20K full, ``ADE20K_2021_17_01``) as detectron2 / CAT-Seg prepare it.

    16-bit TIFF labels: 0..846 (ZegFormer's frequency order, ``vocabularies/ade847.json``),
    65535 = ignore; images and labels have their short side at most 512 (``prepare ade847``).
    val and test = ``validation`` (2,000 images); train = ``training`` if prepared.
    """

    layout = "ade847"
    NUM_CLASSES = 847
    REDUCE_ZERO_LABEL = False
    RAW_IGNORE = RAW_IGNORE_16BIT
    BASE = Path("ADE20K_2021_17_01")
    EXPECTED_TREE = """\
<root>/ADE20K_2021_17_01/
    images_detectron2/validation/<name>.jpg        (2,000 images; python -m zegclip.data.prepare ade847)
    annotations_detectron2/validation/<name>.tif   (16-bit: 0..846, 65535 = ignore)
    images_detectron2/training/, annotations_detectron2/training/   \
(only with prepare ade847 --splits training)"""
    FOLDERS: ClassVar[Mapping[str, str]] = {"train": "training", "val": "validation", "test": "validation"}
    HINT = (
        "Create it with: python -m zegclip.data.prepare ade847 "
        "--src <dir with ADE20K_2021_17_01> --dst <root>"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        if split not in self.FOLDERS:
            raise ValueError(f"{self.layout}: unknown split {split!r}, expected one of {tuple(self.FOLDERS)}")
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        base = root / self.BASE
        _require_dir(base, "ADE20K_2021_17_01 folder", self.EXPECTED_TREE, self.HINT)
        folder = self.FOLDERS[split]
        img_dir, ann_dir = base / "images_detectron2" / folder, base / "annotations_detectron2" / folder
        hint = self.HINT + (" --splits training" if folder == "training" else "")
        _require_dir(img_dir, "prepared image folder", self.EXPECTED_TREE, hint)
        _require_dir(ann_dir, "prepared annotation folder", self.EXPECTED_TREE, hint)
        stems = _stems(img_dir, ".jpg")
        if not stems:
            raise EmptySplitError(f"{self.layout} {split}: no *.jpg image in {img_dir}\n{hint}")
        samples = [Sample(s, img_dir / f"{s}.jpg", ann_dir / f"{s}.tif") for s in stems]
        _check_exist(samples, f"{self.layout} {split} (images in {img_dir})")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


class Context459Dataset(SegmentationDataset):
    """PASCAL Context 459 (PC-459) as CAT-Seg prepares it: VOC2010 JPEGs and 16-bit TIFF labels
    ``LabelMap - 1`` (0..458, unlabelled 0 -> 65535 = ignore).

    val and test only (an evaluation benchmark). The sample list is
    ``ImageSets/SegmentationContext459/val.txt`` when present (written by ``prepare context459``),
    else every ``*.tif`` of the label folder (CAT-Seg's own preparation writes no list).
    """

    layout = "context459"
    NUM_CLASSES = 459
    REDUCE_ZERO_LABEL = False
    RAW_IGNORE = RAW_IGNORE_16BIT
    BASE = Path("VOCdevkit/VOC2010")
    LABEL_DIR = Path("annotations_detectron2/pc459_val")
    LIST = Path("ImageSets/SegmentationContext459/val.txt")
    EXPECTED_TREE = """\
<root>/VOCdevkit/VOC2010/
    JPEGImages/<id>.jpg
    annotations_detectron2/pc459_val/<id>.tif    (python -m zegclip.data.prepare context459; \
16-bit 0..458, 65535 = ignore)
    ImageSets/SegmentationContext459/val.txt     (5,105 ids; optional: else every .tif of pc459_val)"""
    HINT = (
        "Create it with: python -m zegclip.data.prepare context459 "
        "--src <dir with the 459-class .mat files> --dst <root>"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        transform: Callable[..., dict[str, Any]] | None = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        num_classes, reduce_zero_label = self._resolve_label_args(num_classes, reduce_zero_label)
        if split not in ("val", "test"):
            raise ConfigError(
                f"{self.layout}: split {split!r} does not exist: PC-459 is an evaluation benchmark "
                "(val and test = the validation images)"
            )
        root = Path(root)
        _require_dir(root, "data root", self.EXPECTED_TREE)
        base = root / self.BASE
        _require_dir(base, "VOC 2010 folder", self.EXPECTED_TREE)
        label_dir = base / self.LABEL_DIR
        _require_dir(label_dir, "PC-459 label folder", self.EXPECTED_TREE, self.HINT)
        list_path = base / self.LIST
        if list_path.is_file():
            ids, source = _read_list(list_path, f"{self.layout} val", self.EXPECTED_TREE), list_path.name
        else:
            ids, source = _stems(label_dir, ".tif"), f"every .tif in {label_dir}"
            if not ids:
                raise EmptySplitError(f"{self.layout} {split}: no *.tif label in {label_dir}\n{self.HINT}")
        samples = [Sample(i, base / "JPEGImages" / f"{i}.jpg", label_dir / f"{i}.tif") for i in ids]
        _check_exist(samples, f"{self.layout} {split} ({source})")
        super().__init__(samples, num_classes, reduce_zero_label, transform)


def iter_base_datasets(ds: Dataset) -> Iterable[Dataset]:
    """Yield ``ds`` and the datasets it wraps (``Subset``, ``ConcatDataset``)."""
    yield ds
    inner = getattr(ds, "dataset", None)
    if isinstance(inner, Dataset):
        yield from iter_base_datasets(inner)
    for d in getattr(ds, "datasets", ()) or ():
        yield from iter_base_datasets(d)
