"""OmegaConf resolvers used by the Hydra configs (registered on import; idempotent).

* ``${zegclip.cwd:}``: the working directory when the config is resolved. Unlike
  ``${hydra:runtime.cwd}`` it also resolves while Hydra builds a multirun's sweep folder.
* ``${zegclip.run_id:}``: a run folder name that no other run shares: the start time plus a
  random suffix (``2026-12-01_20-15-03_3fa9c1``), or ``slurm-<job id>`` inside a SLURM job, so
  that a requeued job finds its own folder (and checkpoint) again. Cached per config, so every
  job of a sweep and every reference in one run see the same value.
* ``${zegclip.vocabulary:ade150}``: the class names of a vocabulary file
  (``zegclip/data/vocabularies/<name>.json``, or a path to a ``.json``).
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime

from omegaconf import ListConfig, OmegaConf


def run_id() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{array_job}_{task}" if array_job and task else f"slurm-{job}"
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{secrets.token_hex(3)}"


def register() -> None:
    """Register the resolvers (safe to call more than once)."""
    if not OmegaConf.has_resolver("zegclip.cwd"):
        OmegaConf.register_new_resolver("zegclip.cwd", os.getcwd)
    if not OmegaConf.has_resolver("zegclip.run_id"):
        OmegaConf.register_new_resolver("zegclip.run_id", run_id, use_cache=True)
    if not OmegaConf.has_resolver("zegclip.class_names"):
        OmegaConf.register_new_resolver("zegclip.class_names", _class_names)
    if not OmegaConf.has_resolver("zegclip.unseen"):
        OmegaConf.register_new_resolver("zegclip.unseen", _unseen)
    if not OmegaConf.has_resolver("zegclip.vocabulary"):
        OmegaConf.register_new_resolver("zegclip.vocabulary", _vocabulary)


# Resolvers return ListConfig, not list: `OmegaConf.resolve` (Hydra's `--cfg job --resolve`) can store
# a config node in the tree but refuses a plain Python list.
def _class_names(dataset: str) -> ListConfig:
    from zegclip.data.classes import class_names

    return ListConfig(class_names(dataset))


def _vocabulary(name: str) -> ListConfig:
    from zegclip.data.vocabularies import load_vocabulary

    return ListConfig(list(load_vocabulary(name).classes))


def _unseen(dataset: str) -> ListConfig:
    from zegclip.data.classes import unseen_classes

    return ListConfig(unseen_classes(dataset))


register()
