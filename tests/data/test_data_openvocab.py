"""The open-vocabulary benchmarks' data: A-150, A-847, PC-459 and VOC-20b on tiny trees in their
real layouts (the ADE20K full release with its index, 16-bit TIFF labels, ``.mat`` files), their
preparation and checks, the vocabulary files, and the datamodule's text prompts."""

from __future__ import annotations

import pickle
from collections import Counter

import cv2
import numpy as np
import pytest
from hydra.utils import instantiate
from hydra_compose import compose_config
from omegaconf import OmegaConf
from PIL import Image
from spec_classes import VOC_NAMES

from zegclip.common.constants import IGNORE_INDEX
from zegclip.data import (
    ADE150Dataset,
    ADE847Dataset,
    ClassSplitError,
    Context459Dataset,
    DataRootError,
    LabelValueError,
    MissingFileError,
    PreparationError,
    SegmentationDataModule,
    VOC20bDataset,
    VOCDataset,
    read_label,
)
from zegclip.data.classes import CONTEXT59_CLASSES
from zegclip.data.prepare import CONTEXT59_IDS, main
from zegclip.data.prepare_openvocab import (
    ade847_ids,
    ade_resized_size,
    prepare_ade847,
    prepare_context459,
    read_ade_index,
)
from zegclip.data.vocabularies import NAMES, load_vocabulary

# -- vocabulary files -----------------------------------------------------------------------------


def test_vocabulary_files_hold_the_peers_lists():
    sizes = {"ade150": 150, "ade847": 847, "pc459": 459, "pc59": 59, "voc20": 20, "voc20b": 59}
    assert set(NAMES) == set(sizes)
    for name, size in sizes.items():
        vocab = load_vocabulary(name)
        assert len(vocab.classes) == size and len(set(vocab.classes)) == size, name
        assert "CAT-Seg" in vocab.source and vocab.path.name == f"{name}.json"
    assert list(load_vocabulary("voc20").classes) == list(VOC_NAMES)
    voc20b = load_vocabulary("voc20b").classes
    assert list(voc20b[:20]) == list(VOC_NAMES) and set(voc20b[20:]) <= set(load_vocabulary("pc59").classes)
    ade150 = load_vocabulary("ade150").classes
    assert ade150[:3] == ("wall", "building", "sky") and ade150[7] == "bed"  # CAT-Seg's "bed " stripped
    ade847 = load_vocabulary("ade847")
    assert ade847.classes[0] == "wall" and ade847.classes[846] == "adding machine, totalizer, totaliser"
    assert sum(", " in c for c in ade847.classes) == 217  # entries listing synonyms
    ids = ade847_ids()
    assert len(set(ids)) == 847 and ids[0] == 2978 and ids[1] == 312 and ids[846] == 3148
    # PC-59 is PC-459 restricted to 59 ids: the two lists agree on every kept id
    # (CAT-Seg spells table "diningtable")
    pc459, pc59 = load_vocabulary("pc459").classes, load_vocabulary("pc59").classes
    assert [pc459[i - 1] for i in CONTEXT59_IDS] == list(CONTEXT59_CLASSES)
    assert [(a, b) for a, b in zip(pc59, CONTEXT59_CLASSES) if a != b] == [("diningtable", "table")]


def test_vocabulary_resolver_and_errors(tmp_path):
    import zegclip.engine.resolvers  # noqa: F401

    cfg = OmegaConf.create({"v": "pc459", "names": "${zegclip.vocabulary:${v}}"})
    assert list(cfg.names) == list(load_vocabulary("pc459").classes)
    mine = tmp_path / "mine.json"
    mine.write_text('["cat", " dog "]')  # a bare list, as CAT-Seg's files
    assert load_vocabulary(mine).classes == ("cat", "dog")
    cases = {"bad.json": "{not json", "empty.json": '{"classes": []}', "dup.json": '["cat", "cat"]'}
    messages = {
        "bad.json": "not valid JSON",
        "empty.json": "non-empty list",
        "dup.json": r"\['cat'\] appear more than once",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ClassSplitError, match=messages[name]):
            load_vocabulary(tmp_path / name)
    with pytest.raises(ClassSplitError, match="no vocabulary named 'ade2k'"):
        load_vocabulary("ade2k")
    with pytest.raises(ClassSplitError, match="vocabulary file not found"):
        load_vocabulary(tmp_path / "missing.json")


# -- ADE20K-150 and VOC-20b: read as released ---------------------------------------------------------


def test_ade150_reads_the_release(synth, tmp_path):
    root = synth.make_ade150(tmp_path / "data")
    train, val = ADE150Dataset(root, "train"), ADE150Dataset(root, "val")
    assert [s.name for s in train.samples] == sorted(synth.ADE150["training"])
    assert [s.name for s in val.samples] == sorted(synth.ADE150["validation"])
    assert len(ADE150Dataset(root, "test")) == 2
    lab = val.load_sample(0)["label"]  # raw [0, 3, 150, 8]
    assert lab.dtype == np.uint16
    assert np.array_equal(lab, synth.as_ids(synth.stripes([255, 2, 149, 7])))
    bad = root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png"
    synth.write_label(bad, synth.stripes([151, 1]))
    with pytest.raises(
        LabelValueError,
        match=r"ADE_val_00000002\.png holds values \[151\] outside the expected ids 0\.\.150 and 255",
    ):
        val.load_sample(1)
    (root / "ADEChallengeData2016/annotations/training/ADE_train_00000001.png").unlink()
    with pytest.raises(
        MissingFileError, match=r"1 file\(s\) listed by ade150 train .*\n.*ADE_train_00000001\.png"
    ):
        ADE150Dataset(root, "train")
    with pytest.raises(
        DataRootError, match=r"(?s)ADEChallengeData2016 folder not found.*annotations/validation/<id>\.png"
    ):
        ADE150Dataset(tmp_path, "val")


def test_voc20b_keeps_the_background_as_class_20(synth, voc_root):
    ds = VOC20bDataset(voc_root, "val")
    assert [s.name for s in ds.samples] == list(synth.VOC_VAL)
    raw = synth.stripes(synth.VOC_VAL["2007_000039"][0], ignore_row=True)  # [16, 0, 20], 255 first row
    lab = ds.load_sample(0)["label"]
    assert (lab[raw == 0] == 20).all() and (lab[raw == 16] == 15).all() and (lab[raw == 20] == 19).all()
    assert (lab[raw == 255] == IGNORE_INDEX).all()
    assert (
        VOCDataset(voc_root, "val").load_sample(0)["label"][raw == 0] == IGNORE_INDEX
    ).all()  # VOC-20 unchanged
    with pytest.raises(ClassSplitError, match="labels encode 21 classes"):
        VOC20bDataset(voc_root, "val", num_classes=20)


# -- ADE20K-847 -----------------------------------------------------------------------------------


def test_ade_resize_rule_is_the_peers():
    assert ade_resized_size(600, 520) == (591, 512)  # round(600 / 520 * 512) = round(590.77)
    assert ade_resized_size(520, 1000) == (512, 985)
    assert ade_resized_size(1024, 1025) == (512, 512)  # Python's round: 512.5 -> 512
    assert ade_resized_size(513, 513) == (512, 512)
    assert ade_resized_size(512, 2000) is None and ade_resized_size(40, 60) is None


def _ade847_map(ids: np.ndarray) -> np.ndarray:
    """Independent of the code under test: the vocabulary's ids by dictionary."""
    table = {obj_id: k for k, obj_id in enumerate(load_vocabulary("ade847").extra["ade20k_full_ids"])}
    return np.vectorize(lambda v: table.get(int(v), IGNORE_INDEX))(ids).astype(np.uint16)


def test_prepare_ade847_converts_resizes_and_is_idempotent(synth, tmp_path):
    src = synth.make_ade_full(tmp_path / "ade")
    dst = tmp_path / "data"
    report = prepare_ade847(src, dst)
    assert report.counts["written"] == 4  # 2 images + 2 labels
    assert any("the 847 class ids match its objectnames" in n for n in report.notes)
    assert any("validation: 2 images (official: 2,000)" in n for n in report.notes)
    out = dst / "ADE20K_2021_17_01"
    small = out / "annotations_detectron2/validation/ADE_val_00000001.tif"
    assert Image.open(small).mode == "I;16"
    # wall 2978 -> 0, building 312 -> 1, id 5 (not an A-847 class) -> 65535, gear shift 1089 -> 844
    assert np.array_equal(read_label(small), synth.stripes16([0, 1, IGNORE_INDEX, 844]))
    assert np.asarray(Image.open(out / "images_detectron2/validation/ADE_val_00000001.jpg")).shape == (
        40,
        60,
        3,
    )
    # 600 x 520: short side 520 > 512 -> 591 x 512, the class map by nearest neighbour (OpenCV, as the peers)
    big = read_label(out / "annotations_detectron2/validation/ADE_val_00000002.tif")
    ids = synth.stripes16([0, 3148, 2978], 600, 520).astype(np.int32)
    assert big.shape == (591, 512)
    assert np.array_equal(big, _ade847_map(cv2.resize(ids, (512, 591), interpolation=cv2.INTER_NEAREST)))
    assert set(np.unique(big).tolist()) == {0, 846, IGNORE_INDEX}
    image = np.asarray(Image.open(out / "images_detectron2/validation/ADE_val_00000002.jpg"))
    assert image.shape == (591, 512, 3)
    assert not (out / "images_detectron2/training").exists()  # validation only by default
    # the dataset reads what was prepared: class ids above 255 survive
    ds = ADE847Dataset(dst, "val")
    assert [s.name for s in ds.samples] == ["ADE_val_00000001", "ADE_val_00000002"]
    sample = ds.load_sample(1)
    assert sample["label"].dtype == np.uint16 and 846 in sample["label"]
    assert sample["image"].shape[:2] == sample["label"].shape
    again = prepare_ade847(src, dst)
    assert again.counts["unchanged"] == 4 and again.counts["written"] == 0
    # a different existing output is never replaced silently
    Image.fromarray(synth.stripes16([7, 7])).save(small)
    with pytest.raises(PreparationError, match=r"ADE_val_00000001\.tif.*\n.*--overwrite"):
        prepare_ade847(src, dst)
    assert prepare_ade847(src, dst, overwrite=True).counts["overwritten"] == 1
    train = prepare_ade847(src, dst, splits=["training"])
    assert train.counts["written"] == 2 and len(ADE847Dataset(dst, "train")) == 1


def test_prepare_ade847_bad_inputs(synth, tmp_path):
    with pytest.raises(PreparationError, match=r"(?s)index_ade20k\.pkl not found.*images/ADE/validation"):
        prepare_ade847(tmp_path, tmp_path / "data")
    src = synth.make_ade_full(tmp_path / "ade")
    index = src / "ADE20K_2021_17_01/index_ade20k.pkl"
    seg = next((src / "ADE20K_2021_17_01/images/ADE/validation").rglob("ADE_val_00000002_seg.png"))
    seg.rename(seg.with_suffix(".bak"))
    with pytest.raises(
        PreparationError,
        match=r"1 of the 2 validation images listed by .* are missing.*\n.*ADE_val_00000002\.jpg",
    ):
        prepare_ade847(src, tmp_path / "data")
    seg.with_suffix(".bak").rename(seg)
    Image.fromarray(synth.ade_seg_png(np.zeros((10, 10), np.int64))).save(seg)
    with pytest.raises(
        PreparationError, match=r"ADE_val_00000002_seg\.png is 10x10 .* its image .* is 600x520"
    ):
        prepare_ade847(src, tmp_path / "data")
    index.write_bytes(pickle.dumps(Counter(a=1)))  # an index holding something other than lists and arrays
    with pytest.raises(PreparationError, match=r"collections\.Counter is not expected in index_ade20k\.pkl"):
        read_ade_index(index)
    index.write_bytes(pickle.dumps({"filename": ["a.jpg"]}))
    with pytest.raises(PreparationError, match="expected a dict with 'folder' and 'filename'"):
        read_ade_index(index)


def test_prepare_ade847_reports_an_index_of_another_release(synth, tmp_path):
    names = [f"object {k}" for k in range(1, synth.ADE_FULL_OBJECTS + 1)]  # no name matches
    src = synth.make_ade_full(tmp_path / "ade", objectnames=names)
    report = prepare_ade847(src, tmp_path / "data")
    assert any("847 of the 847 ids name another object" in n for n in report.notes)


# -- PASCAL Context 459 ---------------------------------------------------------------------------


def test_prepare_context459_end_to_end(synth, tmp_path):
    src, dst = synth.make_context459_release(tmp_path / "ctx", tmp_path / "data")
    report = prepare_context459(src, dst)
    base = dst / "VOCdevkit/VOC2010"
    assert report.counts["written"] == 2 + 1  # the two validation labels + val.txt
    assert any("the 459 names match" in n for n in report.notes)
    assert any("val.txt: 2 ids from" in n and "5,105" in n and "5,104" in n for n in report.notes)
    # LabelMap - 1, unlabelled 0 -> 65535: class 299 (raw 300) and 458 (raw 459) stay classes
    tif = base / "annotations_detectron2/pc459_val/2008_000007.tif"
    assert Image.open(tif).mode == "I;16"
    assert np.array_equal(read_label(tif), synth.stripes16([IGNORE_INDEX, 1, 299, 458]))
    assert not (base / "annotations_detectron2/pc459_val/2008_000002.tif").exists()  # a training id
    assert (base / "ImageSets/SegmentationContext459/val.txt").read_text() == "2008_000007\n2008_000009\n"
    ds = Context459Dataset(dst, "val")
    assert [s.name for s in ds.samples] == synth.CONTEXT459_VAL and len(Context459Dataset(dst, "test")) == 2
    assert 430 in ds.load_sample(1)["label"]  # raw 431
    with pytest.raises(ValueError, match="PC-459 is an evaluation benchmark"):
        Context459Dataset(dst, "train")
    assert prepare_context459(src, dst).counts["unchanged"] == 3
    # CAT-Seg's list (its pascalcontext_val.txt): another val.txt is never replaced silently
    catseg = tmp_path / "pascalcontext_val.txt"
    synth.write_list(catseg, ["2008_000007"])
    with pytest.raises(PreparationError, match=r"SegmentationContext459/val\.txt"):
        prepare_context459(src, dst, val_list=catseg)
    report = prepare_context459(src, dst, val_list=catseg, overwrite=True)
    assert any("1 id(s) only there ['2008_000009']" in n for n in report.notes)
    assert len(Context459Dataset(dst, "val")) == 1
    # CAT-Seg's own preparation writes no list: every .tif of pc459_val is the split
    (base / "ImageSets/SegmentationContext459/val.txt").unlink()
    assert [s.name for s in Context459Dataset(dst, "val").samples] == synth.CONTEXT459_VAL


def test_prepare_context459_bad_inputs(synth, tmp_path):
    src, dst = synth.make_context459_release(tmp_path / "ctx", tmp_path / "data")
    (src / "trainval/2008_000009.mat").unlink()
    with pytest.raises(
        PreparationError, match=r"1 of the 2 ids of .*val\.txt have no \.mat .*2008_000009\.mat"
    ):
        prepare_context459(src, dst)
    with pytest.raises(DataRootError, match=r"(?s)PC-459 label folder not found.*prepare context459"):
        Context459Dataset(dst, "val")


# -- prepare check -------------------------------------------------------------------------------------


def test_prepare_check_reads_every_new_layout(synth, tmp_path, capsys):
    root = tmp_path / "data"
    prepare_ade847(synth.make_ade_full(tmp_path / "ade"), root)
    prepare_context459(*synth.make_context459_release(tmp_path / "ctx", root))
    synth.make_ade150(root)
    synth.make_voc(root)
    for layout, summary in (
        ("ade847", "val: 2 samples"),
        ("context459", "val: 2 samples"),
        ("ade150", "train: 2 samples"),
        ("voc20b", "val: 2 samples"),
    ):
        assert main(["check", layout, "--root", str(root)]) == 0, layout
        assert summary in capsys.readouterr().out
    tif = root / "ADE20K_2021_17_01/annotations_detectron2/validation/ADE_val_00000001.tif"
    tif.write_bytes(b"not a tiff")
    assert main(["check", "ade847", "--root", str(root)]) == 1
    assert "ADE_val_00000001.tif" in capsys.readouterr().err
    assert main(["check", "context459", "--root", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "data root not found" in err and "annotations_detectron2/pc459_val/<id>.tif" in err


# -- the datamodule's text prompts -------------------------------------------------------------------


def _dm(voc_root, **kw) -> SegmentationDataModule:
    return SegmentationDataModule(
        layout=VOCDataset, root=voc_root, class_names=VOC_NAMES, num_workers=0, **kw
    )


def test_text_prompts_default_to_the_class_names(voc_root):
    dm = _dm(voc_root)
    assert dm.text_prompts == tuple(VOC_NAMES) and dm.prompt_to_class == tuple(range(20))
    assert dm.vocabulary is None and dm.text_synonyms is None
    recorded = _dm(voc_root, vocabulary="voc20")
    assert recorded.vocabulary["name"] == "voc20" and recorded.vocabulary["classes"] == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"text_prompts": [*VOC_NAMES, "sky"]},
            r"21 text prompts for 20 label classes: give `prompt_to_class`",
        ),
        (
            {"text_prompts": [*VOC_NAMES, "sky"], "prompt_to_class": list(range(20))},
            r"has 20 entries but there are 21",
        ),
        (
            {"text_prompts": [*VOC_NAMES, "sky"], "prompt_to_class": [*range(20), 20]},
            r"`prompt_to_class\[20\]` is 20: expected a class index 0\.\.19",
        ),
        (
            {"text_prompts": [*VOC_NAMES, "sky"], "prompt_to_class": [*range(19), 0, 0]},
            r"label classes \[19\] \(\['tvmonitor'\]\) have no text prompt",
        ),
        ({"text_prompts": [*VOC_NAMES[:19], "cat"]}, r"`text_prompts` lists \['cat'\] more than once"),
        ({"vocabulary": "voc20b"}, r"differ from vocabulary 'voc20b' .* at entry 20"),
        ({"text_synonyms": "mean"}, r"`text_synonyms` must be null or one of \['average', 'first'\]"),
    ],
)
def test_text_prompts_are_validated_at_start_up(voc_root, kwargs, message):
    with pytest.raises(ClassSplitError, match=message):
        _dm(voc_root, **kwargs)


def test_synonym_rules_agree_with_the_text_side():
    from zegclip.data.prompts import SYNONYM_RULES
    from zegclip.model.text import SYNONYM_RULES as TEXT_RULES

    assert SYNONYM_RULES == TEXT_RULES


# -- the dataset configs -----------------------------------------------------------------------------


def test_dataset_configs_build_the_benchmarks(synth, tmp_path):
    root = tmp_path / "data"
    prepare_ade847(synth.make_ade_full(tmp_path / "ade"), root)
    prepare_context459(*synth.make_context459_release(tmp_path / "ctx", root))
    synth.make_ade150(root)
    synth.make_voc(root)
    expected = {
        "ade150": (150, 150, "ade150"),
        "ade847": (847, 847, "ade847"),
        "context459": (459, 459, "pc459"),
        "voc20b": (21, 59, "voc20b"),
    }
    for name, (classes, prompts, vocab) in expected.items():
        cfg = compose_config(
            "eval", [f"dataset={name}", f"paths.data_dir={root}", "dataset.num_workers=0"], tmp_path / name
        )
        dm = instantiate(cfg.dataset)
        assert dm.name == name and dm.num_classes == classes and len(dm.text_prompts) == prompts
        assert dm.vocabulary["name"] == vocab and dm.unseen == ()
        assert cfg.dataset.vocabulary == vocab  # the config records the list (saved with the run's config)
        batch = next(iter(dm.test_dataloader()))
        labels = batch["label"].unique().tolist()
        assert set(labels) <= set(range(classes)) | {IGNORE_INDEX}
        if name in ("ade847", "context459"):
            assert max(v for v in labels if v != IGNORE_INDEX) > 255  # ids above 255 reach the batch
    voc20b = instantiate(
        compose_config("eval", ["dataset=voc20b", f"paths.data_dir={root}"], tmp_path / "b").dataset
    )
    assert voc20b.class_names[20] == "background" and voc20b.text_prompts[:20] == tuple(VOC_NAMES)
    assert voc20b.prompt_to_class == (*range(20), *[20] * 39)
    ade847 = compose_config("eval", ["dataset=ade847", f"paths.data_dir={root}"], tmp_path / "c")
    assert instantiate(ade847.dataset).text_synonyms == "average"
