"""Class lists and zero-shot splits: the configs against the official lists (docs/data.md), and split
validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from spec_classes import VOC_NAMES

from zegclip.data import ClassSplitError, SegmentationDataModule, build_class_split, read_class_names

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"

# Hard-coded from docs/data.md §5 (official order and spellings).
SPEC_VOC = list(VOC_NAMES)
SPEC_VOC_UNSEEN = [15, 16, 17, 18, 19]
SPEC_COCO = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
    "banner",
    "blanket",
    "branch",
    "bridge",
    "building-other",
    "bush",
    "cabinet",
    "cage",
    "cardboard",
    "carpet",
    "ceiling-other",
    "ceiling-tile",
    "cloth",
    "clothes",
    "clouds",
    "counter",
    "cupboard",
    "curtain",
    "desk-stuff",
    "dirt",
    "door-stuff",
    "fence",
    "floor-marble",
    "floor-other",
    "floor-stone",
    "floor-tile",
    "floor-wood",
    "flower",
    "fog",
    "food-other",
    "fruit",
    "furniture-other",
    "grass",
    "gravel",
    "ground-other",
    "hill",
    "house",
    "leaves",
    "light",
    "mat",
    "metal",
    "mirror-stuff",
    "moss",
    "mountain",
    "mud",
    "napkin",
    "net",
    "paper",
    "pavement",
    "pillow",
    "plant-other",
    "plastic",
    "platform",
    "playingfield",
    "railing",
    "railroad",
    "river",
    "road",
    "rock",
    "roof",
    "rug",
    "salad",
    "sand",
    "sea",
    "shelf",
    "sky-other",
    "skyscraper",
    "snow",
    "solid-other",
    "stairs",
    "stone",
    "straw",
    "structural-other",
    "table",
    "tent",
    "textile-other",
    "towel",
    "tree",
    "vegetable",
    "wall-brick",
    "wall-concrete",
    "wall-other",
    "wall-panel",
    "wall-stone",
    "wall-tile",
    "wall-wood",
    "water-other",
    "waterdrops",
    "window-blind",
    "window-other",
    "wood",
]
SPEC_COCO_UNSEEN = [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]
SPEC_COCO_UNSEEN_NAMES = [
    "cow",
    "giraffe",
    "suitcase",
    "frisbee",
    "skateboard",
    "carrot",
    "scissors",
    "cardboard",
    "clouds",
    "grass",
    "playingfield",
    "river",
    "road",
    "tree",
    "wall-concrete",
]
SPEC_CONTEXT = [
    "aeroplane",
    "bag",
    "bed",
    "bedclothes",
    "bench",
    "bicycle",
    "bird",
    "boat",
    "book",
    "bottle",
    "building",
    "bus",
    "cabinet",
    "car",
    "cat",
    "ceiling",
    "chair",
    "cloth",
    "computer",
    "cow",
    "cup",
    "curtain",
    "dog",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "horse",
    "keyboard",
    "light",
    "motorbike",
    "mountain",
    "mouse",
    "person",
    "plate",
    "platform",
    "pottedplant",
    "road",
    "rock",
    "sheep",
    "shelves",
    "sidewalk",
    "sign",
    "sky",
    "snow",
    "sofa",
    "table",
    "track",
    "train",
    "tree",
    "truck",
    "tvmonitor",
    "wall",
    "water",
    "window",
    "wood",
]
SPEC_CONTEXT_UNSEEN = [0, 2, 3, 7, 9, 13, 17, 19, 31, 37]
SPEC_CONTEXT_UNSEEN_NAMES = [
    "aeroplane",
    "bed",
    "bedclothes",
    "boat",
    "bottle",
    "car",
    "cloth",
    "cow",
    "keyboard",
    "plate",
]


def load(name: str, data_dir: str = "/nonexistent", **extra: object):
    import zegclip.engine.resolvers  # noqa: F401  (the configs read their class lists through ${zegclip.class_names:...})

    cfg = OmegaConf.create({"paths": {"data_dir": data_dir}, "seed": 7, **extra})
    cfg.dataset = OmegaConf.load(CONF / f"{name}.yaml").dataset
    return cfg


@pytest.mark.parametrize(
    ("name", "names", "unseen", "unseen_names", "reduce_zero"),
    [
        ("voc", SPEC_VOC, SPEC_VOC_UNSEEN, SPEC_VOC[15:], True),
        ("coco", SPEC_COCO, SPEC_COCO_UNSEEN, SPEC_COCO_UNSEEN_NAMES, False),
        ("context", SPEC_CONTEXT, SPEC_CONTEXT_UNSEEN, SPEC_CONTEXT_UNSEEN_NAMES, True),
    ],
)
def test_config_matches_spec(name, names, unseen, unseen_names, reduce_zero):
    assert set(OmegaConf.load(CONF / f"{name}.yaml")) == {
        "defaults",
        "dataset",
    }  # group `dataset` fills key `dataset`
    cfg = load(name)
    d = cfg.dataset
    assert list(d.class_names) == names
    assert list(d.unseen) == unseen
    assert [names[i] for i in d.unseen] == unseen_names
    assert d.reduce_zero_label is reduce_zero
    expected_layout = {"voc": "VOCDataset", "coco": "COCOStuffDataset", "context": "ContextDataset"}[name]
    assert d.layout._target_ == f"zegclip.data.{expected_layout}" and d.layout._partial_ is True
    assert d.root == "/nonexistent" and d.seed == 7
    assert d.crop_size == 512 and list(d.scale) == [2048, 512] and list(d.ratio_range) == [0.5, 2.0]
    assert d.cat_max_ratio == 0.75 and d.test_short_side == 512 and d.batch_size == 4 and d.val_limit is None
    dm = instantiate(cfg.dataset)  # start-up validation runs here; no data needed yet
    assert isinstance(dm, SegmentationDataModule)
    assert dm.class_names == tuple(names) and dm.unseen == tuple(unseen)
    assert set(dm.seen) | set(dm.unseen) == set(range(len(names))) and not set(dm.seen) & set(dm.unseen)
    assert len(names) == {"voc": 20, "coco": 171, "context": 59}[name]


def test_custom_config_reads_class_file(custom_root):
    cfg = load("custom", data_dir=str(custom_root.parent))
    cfg.dataset.unseen = [2]
    dm = instantiate(cfg.dataset)
    assert dm.class_names == ("cat", "dog", "bird")
    assert dm.seen == (0, 1) and dm.unseen == (2,)
    dm.setup("fit")
    assert len(dm.train_dataset) == 2 and len(dm.val_dataset) == 1


def _startup_error(cfg) -> BaseException:
    """Hydra wraps the error raised by the target; return the original."""
    with pytest.raises(Exception) as info:
        instantiate(cfg.dataset)
    err = info.value
    return err.__cause__ if err.__cause__ is not None else err


def test_config_with_wrong_unseen_fails_at_startup():
    cfg = load("voc")
    cfg.dataset.unseen = [15, 20]
    err = _startup_error(cfg)
    assert isinstance(err, ClassSplitError) and "index 20 is out of range" in str(err)
    cfg = load("coco")
    cfg.dataset.class_names = SPEC_COCO[:170]
    err = _startup_error(cfg)
    assert isinstance(err, ClassSplitError) and "170 entries but the dataset's labels encode 171" in str(err)
    cfg = load("context")
    cfg.dataset.seen = [1, 4]
    err = _startup_error(cfg)
    assert isinstance(err, ClassSplitError) and "must cover all 59 classes" in str(err)
    cfg = load("voc")
    cfg.dataset.reduce_zero_label = False  # VOC's raw 0 is background: this would shift every id
    err = _startup_error(cfg)
    assert isinstance(err, ClassSplitError) and "reduce_zero_label=True" in str(err)


def test_class_split_validation():
    names = ["a", "b", "c", "d"]
    s = build_class_split(names, unseen=[3, 1])
    assert s.seen == (0, 2) and s.unseen == (1, 3) and s.unseen_names == ("b", "d")
    assert build_class_split(names, unseen=[1], seen=[0, 2, 3]).seen == (0, 2, 3)
    assert build_class_split(names).unseen == ()
    cases = [
        (dict(unseen=[4]), "out of range"),
        (dict(unseen=[-1]), "out of range"),
        (dict(unseen=[1, 1]), "more than once"),
        (dict(unseen=[1], seen=[0, 1, 2, 3]), "overlap"),
        (dict(unseen=[1], seen=[0, 2]), "missing \\[3\\]"),
        (dict(unseen=[0, 1, 2, 3]), "no seen class"),
        (dict(unseen=[1.0]), "integer"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ClassSplitError, match=msg):
            build_class_split(names, **kwargs)
    with pytest.raises(ClassSplitError, match="duplicates"):
        build_class_split(["a", "a"])
    with pytest.raises(ClassSplitError, match="empty"):
        build_class_split([])


def test_read_class_names(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("# comment\n cat \n\ndog\n")
    assert read_class_names(p) == ["cat", "dog"]
    with pytest.raises(ClassSplitError, match="not found"):
        read_class_names(tmp_path / "missing.txt")
    (tmp_path / "e.txt").write_text("\n# only a comment\n")
    with pytest.raises(ClassSplitError, match="holds no name"):
        read_class_names(tmp_path / "e.txt")
