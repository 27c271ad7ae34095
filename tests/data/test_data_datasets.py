"""Datasets on tiny synthetic trees in the real layouts: label mapping and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from spec_classes import VOC_NAMES

from zegclip.common.constants import IGNORE_INDEX
from zegclip.data import (
    COCOStuffDataset,
    ContextDataset,
    CustomDataset,
    DataRootError,
    EmptySplitError,
    ImageReadError,
    LabelValueError,
    MissingFileError,
    SizeMismatchError,
    SplitListError,
    VOCDataset,
    decode_label,
    make_label_lut,
)
from zegclip.data.errors import ClassSplitError

VOC_UNSEEN = {15, 16, 17, 18, 19}


def _by_name(ds):
    return {ds.samples[i].name: i for i in range(len(ds))}


def test_voc_label_mapping_pixel_by_pixel(synth, voc_root):
    train = VOCDataset(voc_root, "train")
    assert [s.name for s in train.samples] == list(synth.VOC_TRAIN) + list(synth.VOC_AUG)
    assert train.samples[0].label_path.parent.name == "SegmentationClass"
    assert train.samples[2].label_path.parent.name == "SegmentationClassAug"
    s = train.load_sample(0)  # raw synth.stripes [0, 1, 16] with a 255 first row
    raw = synth.stripes(synth.VOC_TRAIN["2007_000032"], ignore_row=True)
    lab = s["label"]
    assert lab.dtype == np.uint16 and lab.shape == (synth.H, synth.W)
    assert (lab[raw == 0] == IGNORE_INDEX).all()  # background -> ignore
    assert (lab[raw == 255] == IGNORE_INDEX).all()  # border stays ignore
    assert (lab[raw == 1] == 0).all()  # aeroplane
    assert (lab[raw == 16] == 15).all()  # raw 16 is class 15, pottedplant, unseen
    assert VOC_NAMES[15] == "pottedplant" and 15 in VOC_UNSEEN
    s2 = train.load_sample(1)
    raw2 = synth.stripes(synth.VOC_TRAIN["2007_000033"], ignore_row=True)
    assert (s2["label"][raw2 == 20] == 19).all()  # tvmonitor
    assert s["image"].dtype == np.uint8 and s["image"].shape == (synth.H, synth.W, 3)
    assert s["meta"]["name"] == "2007_000032" and s["meta"]["ori_size"] == (synth.H, synth.W)
    val = VOCDataset(voc_root, "val")
    assert [x.name for x in val.samples] == list(synth.VOC_VAL)
    assert val.load_sample(1)["meta"]["ori_size"] == (50, 30)
    assert len(VOCDataset(voc_root, "train", use_aug=False)) == len(synth.VOC_TRAIN)


def test_context_and_coco_mapping(synth, context_root, coco_root):
    ctx = ContextDataset(context_root, "train")
    raw = synth.stripes(synth.CONTEXT["train"]["2008_000002"])  # [0, 1, 59]
    lab = ctx.load_sample(0)["label"]
    assert (
        (lab[raw == 0] == IGNORE_INDEX).all() and (lab[raw == 1] == 0).all() and (lab[raw == 59] == 58).all()
    )
    assert len(ContextDataset(context_root, "test")) == len(synth.CONTEXT["val"])
    coco = COCOStuffDataset(coco_root, "train")
    assert [x.name for x in coco.samples] == sorted(synth.COCO["train2017"])
    for i, x in enumerate(coco.samples):
        np.testing.assert_array_equal(
            coco.load_sample(i)["label"], synth.as_ids(synth.stripes(synth.COCO["train2017"][x.name]))
        )
    assert len(COCOStuffDataset(coco_root, "val")) == 2


def test_custom_dataset(synth, custom_root):
    ds = CustomDataset(custom_root, "train", num_classes=3)
    assert isinstance(ds, CustomDataset) and len(ds) == 2
    np.testing.assert_array_equal(ds.load_sample(0)["label"], synth.as_ids(synth.stripes([0, 1, 2, 255])))
    assert len(CustomDataset(custom_root, "test", num_classes=3)) == 1
    # reduce_zero_label: 0 -> ignore, 1 -> 0, 2 -> 1 with two classes
    ds = CustomDataset(custom_root, "train", num_classes=2, reduce_zero_label=True)
    np.testing.assert_array_equal(ds.load_sample(0)["label"], synth.as_ids(synth.stripes([255, 0, 1, 255])))
    # with only two classes and no zero reduction, raw 2 is out of range
    ds = CustomDataset(custom_root, "train", num_classes=2)
    with pytest.raises(
        LabelValueError, match=r"a\.png holds values \[2\] outside the expected ids 0\.\.1 and 255"
    ):
        ds.load_sample(0)
    (custom_root / "splits").mkdir()
    synth.write_list(custom_root / "splits" / "train.txt", ["b"])
    ds = CustomDataset(custom_root, "train", num_classes=3, split_file="splits/{split}.txt")
    assert [s.name for s in ds.samples] == ["b"]


def test_layout_rules_cannot_be_changed(voc_root):
    with pytest.raises(ClassSplitError, match="labels encode 20 classes"):
        VOCDataset(voc_root, "train", num_classes=21)
    with pytest.raises(ClassSplitError, match="reduce_zero_label=True"):
        VOCDataset(voc_root, "train", reduce_zero_label=False)


def test_label_lut():
    lut = make_label_lut(20, True)
    raw = np.array([[0, 1, 16, 20, 255]], dtype=np.uint8)
    assert decode_label(raw, lut).tolist() == [[IGNORE_INDEX, 0, 15, 19, IGNORE_INDEX]]
    assert decode_label(raw, lut).dtype == np.uint16
    with pytest.raises(LabelValueError, match=r"x\.png holds values \[21, 254\]"):
        decode_label(np.array([[21, 254, 3]], dtype=np.uint8), lut, "x.png")
    with pytest.raises(LabelValueError, match=r"values \[300\]"):
        decode_label(np.array([[300, 1]], dtype=np.int32), lut, "y.png")
    coco = make_label_lut(171, False)
    assert decode_label(np.array([[0, 170, 255]], dtype=np.uint8), coco).tolist() == [[0, 170, IGNORE_INDEX]]
    with pytest.raises(LabelValueError):
        decode_label(np.array([[171]], dtype=np.uint8), coco)


# -- bad input -------------------------------------------------------------------------------------
def test_missing_root_prints_expected_tree(tmp_path):
    with pytest.raises(DataRootError) as e:
        VOCDataset(tmp_path / "nowhere", "train")
    msg = str(e.value)
    assert "nowhere" in msg and "Expected layout" in msg and "SegmentationClassAug" in msg
    with pytest.raises(DataRootError, match="VOCdevkit/VOC2012"):
        VOCDataset(tmp_path, "train")  # root exists, tree does not
    with pytest.raises(DataRootError, match="coco_stuff164k"):
        COCOStuffDataset(tmp_path, "train")
    with pytest.raises(DataRootError, match="SegmentationClassContext"):
        ContextDataset(tmp_path, "val")


def test_missing_split_file(voc_root, context_root):
    sets = voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation"
    (sets / "aug.txt").unlink()
    with pytest.raises(DataRootError, match=r"aug\.txt.*\n.*prepare voc"):
        VOCDataset(voc_root, "train")
    (sets / "val.txt").unlink()
    with pytest.raises(DataRootError, match=r"val\.txt"):
        VOCDataset(voc_root, "val")
    (context_root / "VOCdevkit/VOC2010/ImageSets/SegmentationContext/train.txt").unlink()
    with pytest.raises(DataRootError, match=r"SegmentationContext/train\.txt"):
        ContextDataset(context_root, "train")


def test_missing_image_or_label(voc_root, coco_root):
    (voc_root / "VOCdevkit/VOC2012/JPEGImages/2008_000001.jpg").unlink()
    with pytest.raises(MissingFileError, match=r"image .*JPEGImages/2008_000001\.jpg"):
        VOCDataset(voc_root, "train")
    (coco_root / "coco_stuff164k/annotations/val2017/000000000139_labelTrainIds.png").unlink()
    with pytest.raises(MissingFileError, match=r"label .*000000000139_labelTrainIds\.png"):
        COCOStuffDataset(coco_root, "val")
    ds = COCOStuffDataset(coco_root, "train")  # a file vanishing after start-up is still named
    (coco_root / "coco_stuff164k/images/train2017/000000000025.jpg").unlink()
    with pytest.raises(MissingFileError, match=r"image not found: .*000000000025\.jpg"):
        ds.load_sample(1)


def test_raw_coco_annotations_are_refused(coco_root):
    ann = coco_root / "coco_stuff164k/annotations/train2017"
    for p in ann.glob("*_labelTrainIds.png"):
        p.rename(ann / p.name.replace("_labelTrainIds", ""))
    with pytest.raises(MissingFileError, match="prepare coco"):
        COCOStuffDataset(coco_root, "train")


def test_unreadable_and_truncated_images(voc_root):
    jpg = voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])  # truncated
    ds = VOCDataset(voc_root, "train")
    with pytest.raises(ImageReadError, match=r"2007_000032\.jpg"):
        ds.load_sample(0)
    jpg.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=r"cannot decode image .*2007_000032\.jpg"):
        ds[0]
    png = voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(ImageReadError, match=r"label map .*2007_000033\.png"):
        ds.load_sample(1)


def test_colour_label_refused(voc_root):
    from PIL import Image

    png = voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png"
    Image.open(png).convert("RGB").save(png)
    with pytest.raises(ImageReadError, match="mode 'RGB'"):
        VOCDataset(voc_root, "train").load_sample(0)


def test_label_value_outside_ids(synth, voc_root, context_root):
    synth.write_label(
        voc_root / "VOCdevkit/VOC2012/SegmentationClassAug/2008_000001.png", synth.stripes([0, 21, 3])
    )
    ds = VOCDataset(voc_root, "train")
    with pytest.raises(
        LabelValueError,
        match=r"2008_000001\.png holds values \[21\] outside the expected ids 0\.\.20 and 255",
    ):
        ds.load_sample(2)
    synth.write_label(
        context_root / "VOCdevkit/VOC2010/SegmentationClassContext/2008_000007.png", synth.stripes([60, 0])
    )
    with pytest.raises(LabelValueError, match=r"\[60\] outside the expected ids 0\.\.59 and 255"):
        ContextDataset(context_root, "val").load_sample(0)


def test_size_mismatch(synth, voc_root):
    synth.write_image(voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg", synth.H + 2, synth.W)
    ds = VOCDataset(voc_root, "train")
    with pytest.raises(SizeMismatchError, match=r"2007_000033\.jpg is 42x60 .*/2007_000033\.png is 40x60"):
        ds.load_sample(1)


def test_empty_split(voc_root, coco_root, custom_root):
    (voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").write_text("\n\n")
    with pytest.raises(EmptySplitError, match=r"val\.txt is empty"):
        VOCDataset(voc_root, "val")
    for p in (coco_root / "coco_stuff164k/images/val2017").glob("*.jpg"):
        p.unlink()
    with pytest.raises(EmptySplitError, match="no \\*.jpg image in .*val2017"):
        COCOStuffDataset(coco_root, "val")
    for p in (custom_root / "images/val").glob("*"):
        p.unlink()
    with pytest.raises(EmptySplitError, match="no \\*.jpg image"):
        CustomDataset(custom_root, "val", num_classes=3)


def test_val_ids_in_aug_list_are_refused(synth, voc_root):
    synth.write_list(
        voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/aug.txt", ["2008_000001", "2007_000039"]
    )
    with pytest.raises(SplitListError, match=r"VOC val id.*2007_000039"):
        VOCDataset(voc_root, "train")
    synth.write_list(voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/aug.txt", ["2007_000032"])
    with pytest.raises(SplitListError, match="appears in both train.txt and aug.txt"):
        VOCDataset(voc_root, "train")
