"""Exceptions raised by the data layer.

Every error names the offending file (or config key) and says what was expected, so that a
data problem surfaces at once instead of as a near-zero IoU after a day of training.
"""

from __future__ import annotations

from zegclip.common.errors import UserError

# An image or label file that cannot be decoded raises zegclip.common.errors.ImageReadError (one class
# for the datasets, the predictor and the apps: zegclip/common/images.py reads every picture).


class DataError(UserError, RuntimeError):
    """Base class of all data-layer errors (user errors: one line, exit code 2)."""


class DataRootError(DataError, FileNotFoundError):
    """The data root or one of its expected folders / list files is missing."""


class MissingFileError(DataError, FileNotFoundError):
    """A file listed by a split (image or label) does not exist."""


class EmptySplitError(DataError, ValueError):
    """A split (list file or folder) holds no sample."""


class SplitListError(DataError, ValueError):
    """A list file is inconsistent (duplicate ids, val ids in training lists)."""


class LabelValueError(DataError, ValueError):
    """A label map holds a value that is neither a class id of the dataset nor its ignore value."""


class SizeMismatchError(DataError, ValueError):
    """An image and its label map have different sizes."""


class ClassSplitError(DataError, ValueError):
    """Invalid class names or seen / unseen split in a dataset config."""


class PreparationError(DataError):
    """A preparation script met an input it does not understand or a conflicting output."""
