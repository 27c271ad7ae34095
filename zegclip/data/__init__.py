"""Data layer: datasets in their real on-disk layouts, the official augmentation, the datamodule.

Knows no model code. Datasets emit 0-based class ids with ``IGNORE_INDEX`` (65535) = ignore.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # before albumentations is imported

from zegclip.common.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from zegclip.common.errors import ImageReadError  # noqa: E402
from zegclip.data.datamodule import SegmentationDataModule  # noqa: E402
from zegclip.data.datasets import (  # noqa: E402
    ADE150Dataset,
    ADE847Dataset,
    COCOStuffDataset,
    Context459Dataset,
    ContextDataset,
    CustomDataset,
    Sample,
    SegmentationDataset,
    VOC20bDataset,
    VOCDataset,
)
from zegclip.data.errors import (  # noqa: E402
    ClassSplitError,
    DataError,
    DataRootError,
    EmptySplitError,
    LabelValueError,
    MissingFileError,
    PreparationError,
    SizeMismatchError,
    SplitListError,
)
from zegclip.data.io import decode_label, make_label_lut, read_label, read_sample_image  # noqa: E402
from zegclip.data.loading import (  # noqa: E402
    ResumableDataLoader,
    SeededSamples,
    ShardedEvalSampler,
    StreamProgress,
    TrainStream,
    collate_segmentation,
    derive_seed,
    seed_dataset,
    seed_worker,
)
from zegclip.data.splits import ClassSplit, build_class_split, read_class_names  # noqa: E402
from zegclip.data.transforms import (  # noqa: E402
    CatMaxRatioCrop,
    PhotoMetricDistortion,
    RatioRangeResize,
    ShortSideResize,
    TestTransform,
    TrainTransform,
    build_test_transform,
    build_train_transform,
)

__all__ = [
    "ADE150Dataset",
    "ADE847Dataset",
    "Context459Dataset",
    "VOC20bDataset",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "COCOStuffDataset",
    "CatMaxRatioCrop",
    "ClassSplit",
    "ClassSplitError",
    "ContextDataset",
    "CustomDataset",
    "DataError",
    "DataRootError",
    "EmptySplitError",
    "ImageReadError",
    "LabelValueError",
    "MissingFileError",
    "PhotoMetricDistortion",
    "PreparationError",
    "RatioRangeResize",
    "Sample",
    "SegmentationDataModule",
    "SegmentationDataset",
    "ResumableDataLoader",
    "SeededSamples",
    "ShardedEvalSampler",
    "StreamProgress",
    "TrainStream",
    "ShortSideResize",
    "SizeMismatchError",
    "SplitListError",
    "TestTransform",
    "TrainTransform",
    "VOCDataset",
    "build_class_split",
    "build_test_transform",
    "build_train_transform",
    "collate_segmentation",
    "decode_label",
    "derive_seed",
    "make_label_lut",
    "read_class_names",
    "read_sample_image",
    "read_label",
    "seed_dataset",
    "seed_worker",
]
