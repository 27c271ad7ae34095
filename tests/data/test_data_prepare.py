"""Preparation scripts on tiny raw inputs: conversions pixel by pixel, idempotency, conflicts, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from zegclip.data import ContextDataset, PreparationError, VOCDataset, read_label
from zegclip.data.classes import CONTEXT59_CLASSES as CONTEXT59_NAMES
from zegclip.data.prepare import (
    CONTEXT59_IDS,
    check_dataset,
    coco_stuff_lut,
    load_sbd_mat,
    main,
    prepare_coco,
    prepare_context,
    prepare_voc,
)

SBD = {"2007_000032": [0, 1], "2008_000010": [0, 16, 20], "2007_000039": [3, 4], "2009_000001": [5, 0, 7]}


def make_sbd(synth, tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "raw"
    ds = src / "benchmark_RELEASE" / "dataset"
    for k, (i, vals) in enumerate(SBD.items()):
        ds.joinpath("cls").mkdir(parents=True, exist_ok=True)
        seg = synth.stripes(vals)
        savemat(
            ds / "cls" / f"{i}.mat",
            {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": np.array(vals)}},
        )
        synth.write_image(tmp_path / "data/VOCdevkit/VOC2012/JPEGImages" / f"{i}.jpg", seed=k)
    synth.write_list(
        ds / "train.txt", ["2007_000032", "2008_000010", "2007_000039"]
    )  # a VOC train and a VOC val id
    synth.write_list(ds / "val.txt", ["2009_000001"])
    dst = synth.make_voc(tmp_path / "data")
    aug = dst / "VOCdevkit/VOC2012/ImageSets/Segmentation/aug.txt"
    aug.unlink()
    return src, dst


def test_sbd_mat_struct_is_read(synth, tmp_path):
    seg = synth.stripes([0, 3, 20])
    savemat(tmp_path / "x.mat", {"GTcls": {"Segmentation": seg}})
    out = load_sbd_mat(tmp_path / "x.mat")
    assert out.dtype == np.uint8 and np.array_equal(out, seg)
    savemat(tmp_path / "bad.mat", {"GTcls": {"Segmentation": synth.stripes([0, 21])}})
    with pytest.raises(PreparationError, match=r"bad\.mat.*\[21\], expected 0\.\.20"):
        load_sbd_mat(tmp_path / "bad.mat")
    savemat(tmp_path / "other.mat", {"LabelMap": seg})
    with pytest.raises(PreparationError, match=r"other\.mat: no 'GTcls'"):
        load_sbd_mat(tmp_path / "other.mat")


def test_prepare_voc_converts_and_is_idempotent(synth, tmp_path):
    src, dst = make_sbd(synth, tmp_path)
    voc = dst / "VOCdevkit/VOC2012"
    report = prepare_voc(src, dst)
    assert report.counts["written"] == len(SBD) + 1  # PNGs + aug.txt
    # aug = (SBD train + val) - VOC train - VOC val, sorted
    assert (voc / "ImageSets/Segmentation/aug.txt").read_text() == "2008_000010\n2009_000001\n"
    for i, vals in SBD.items():
        png = voc / "SegmentationClassAug" / f"{i}.png"
        assert Image.open(png).mode == "L" and np.array_equal(read_label(png), synth.stripes(vals))
    ds = VOCDataset(dst, "train")  # end to end: the dataset reads what was prepared
    assert [s.name for s in ds.samples][-2:] == ["2008_000010", "2009_000001"]
    lab = ds.load_sample(len(ds) - 2)["label"]  # raw [0, 16, 20] -> [ignore, 15, 19]
    assert np.array_equal(lab, synth.as_ids(synth.stripes([255, 15, 19])))
    again = prepare_voc(src, dst)
    assert again.counts["unchanged"] == len(SBD) + 1 and again.counts["written"] == 0
    # a different existing output is never replaced silently
    synth.write_label(voc / "SegmentationClassAug/2008_000010.png", synth.stripes([1, 1, 1]))
    with pytest.raises(PreparationError, match=r"SegmentationClassAug/2008_000010\.png.*\n.*--overwrite"):
        prepare_voc(src, dst)
    assert np.array_equal(read_label(voc / "SegmentationClassAug/2008_000010.png"), synth.stripes([1, 1, 1]))
    fixed = prepare_voc(src, dst, overwrite=True)
    assert fixed.counts["overwritten"] == 1
    assert np.array_equal(
        read_label(voc / "SegmentationClassAug/2008_000010.png"), synth.stripes([0, 16, 20])
    )
    (voc / "ImageSets/Segmentation/aug.txt").write_text("2008_000010\n")
    with pytest.raises(PreparationError, match=r"aug\.txt"):
        prepare_voc(src, dst)
    assert not list(voc.rglob(".*.tmp"))  # no temporary file left behind


def test_prepare_voc_bad_inputs(synth, tmp_path):
    with pytest.raises(PreparationError, match="(?s)SBD not found.*Expected:.*benchmark_RELEASE/dataset/cls"):
        prepare_voc(tmp_path, tmp_path)
    src, dst = make_sbd(synth, tmp_path)
    (dst / "VOCdevkit/VOC2012/JPEGImages/2009_000001.jpg").unlink()
    with pytest.raises(PreparationError, match=r"no image .*2009_000001\.jpg"):
        prepare_voc(src, dst)


def test_prepare_coco_mapping(synth, tmp_path):
    lut = coco_stuff_lut()
    assert (lut[:11] == np.arange(11)).all() and lut[12] == 11 and lut[89] == 79 and lut[91] == 80
    assert (
        lut[181] == 170
        and lut[255] == 255
        and (lut[[11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90]] == -1).all()
    )
    assert sorted(lut[lut >= 0].tolist()) == list(range(171)) + [255]
    ann = tmp_path / "data/coco_stuff164k/annotations"
    synth.write_label(ann / "val2017/000000000139.png", synth.stripes([0, 10, 12, 89, 91, 181, 255]))
    synth.write_label(ann / "train2017/000000000009.png", synth.stripes([5, 255]))
    report = prepare_coco(None, tmp_path / "data")
    assert report.counts["written"] == 2
    out = read_label(ann / "val2017/000000000139_labelTrainIds.png")
    assert np.array_equal(out, synth.stripes([0, 10, 11, 79, 80, 170, 255]))
    assert prepare_coco(None, tmp_path / "data").counts["unchanged"] == 2  # outputs are not re-read as inputs
    synth.write_label(ann / "val2017/000000000285.png", synth.stripes([3, 11]))
    with pytest.raises(PreparationError, match=r"000000000285\.png: raw ids \[11\] are not COCO-Stuff ids"):
        prepare_coco(None, tmp_path / "data")


def make_context_raw(synth, tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "ctx", tmp_path / "data"
    base = dst / "VOCdevkit/VOC2010"
    maps = {"2008_000002": [0, 2, 9, 458], "2008_000003": [459, 3, 100], "2008_000007": [44, 0]}
    for k, (i, vals) in enumerate(maps.items()):
        (src / "trainval").mkdir(parents=True, exist_ok=True)
        savemat(src / "trainval" / f"{i}.mat", {"LabelMap": _u16(vals)})
        synth.write_image(base / "JPEGImages" / f"{i}.jpg", seed=k)
    synth.write_list(
        base / "ImageSets/Main/train.txt", ["2008_000002", "2008_000003", "2008_000999"]
    )  # no .mat: left out
    synth.write_list(base / "ImageSets/Main/val.txt", ["2008_000007"])
    names = {raw: name for raw, name in zip(CONTEXT59_IDS, CONTEXT59_NAMES)}
    (src / "labels.txt").write_text("".join(f"{k}: {names.get(k, f'other{k}')}\n" for k in range(1, 460)))
    return src, dst


def _u16(vals):
    lab = np.zeros((40, 60), np.uint16)
    bounds = np.linspace(0, 60, len(vals) + 1).astype(int)
    for v, a, b in zip(vals, bounds[:-1], bounds[1:]):
        lab[:, a:b] = v
    return lab


def test_prepare_context(synth, tmp_path):
    src, dst = make_context_raw(synth, tmp_path)
    report = prepare_context(src, dst)
    base = dst / "VOCdevkit/VOC2010"
    assert report.counts["written"] == 3 + 2
    assert any("the 59 ids match" in n for n in report.notes)
    # kept ids in increasing order -> 1..59, every other id -> 0
    assert np.array_equal(
        read_label(base / "SegmentationClassContext/2008_000002.png"), synth.stripes([0, 1, 2, 59])
    )
    assert np.array_equal(
        read_label(base / "SegmentationClassContext/2008_000003.png"), synth.stripes([0, 0, 0])
    )
    assert np.array_equal(
        read_label(base / "SegmentationClassContext/2008_000007.png"), synth.stripes([11, 0])
    )
    assert (base / "ImageSets/SegmentationContext/train.txt").read_text() == "2008_000002\n2008_000003\n"
    assert (base / "ImageSets/SegmentationContext/val.txt").read_text() == "2008_000007\n"
    lab = ContextDataset(dst, "train").load_sample(0)["label"]
    assert np.array_equal(lab, synth.as_ids(synth.stripes([255, 0, 1, 58])))  # aeroplane = 0, wood = 58
    assert prepare_context(src, dst).counts["unchanged"] == 5
    savemat(src / "trainval/2008_000007.mat", {"LabelMap": _u16([460, 1])})
    with pytest.raises(PreparationError, match=r"2008_000007\.mat: LabelMap holds values \[460\]"):
        prepare_context(src, dst)


def test_cli(synth, tmp_path, capsys):
    src, dst = make_sbd(synth, tmp_path)
    assert main(["voc", "--src", str(src / "benchmark_RELEASE"), "--dst", str(dst), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "written 5" in out and "aug.txt: 2 ids (official: 9,118)" in out
    assert main(["voc", "--src", str(src), "--dst", str(dst), "--workers", "2"]) == 0  # process pool path
    assert "unchanged 5" in capsys.readouterr().out
    assert main(["coco", "--dst", str(tmp_path / "nothing")]) == 1
    assert "stuffthingmaps folder not found" in capsys.readouterr().err
    assert main(["check", "voc", "--root", str(dst)]) == 0
    assert "check voc: ok 6" in capsys.readouterr().out  # train 2 + prepared aug 2, val 2
    synth.write_label(
        dst / "VOCdevkit/VOC2012/SegmentationClass/2007_000042.png", synth.stripes([0, 40], 50, 30)
    )
    with pytest.raises(
        PreparationError,
        match=r"1 of 2 voc val samples cannot be used:\n.*2007_000042\.png holds values \[40\]",
    ):
        check_dataset("voc", dst)
