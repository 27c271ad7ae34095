"""``ZegCLIPModule``: the LightningModule that trains and evaluates ZegCLIP in one of the settings.

* **inductive**: the text set is the seen classes; unseen pixels are ignored; at test time the
  seen scores are lowered by ``seen_bias`` (0.1).
* **transductive**: the text set is all classes; pixels of unseen classes get pseudo-labels
  (argmax over the unseen classes of the current sigmoid scores, no gradient). With
  ``inductive_steps`` = K > 0 the run is the paper's whole schedule: steps 1..K are inductive (the
  inductive recipe's first half), then the optimiser state and the schedule restart and the
  remaining steps self-train, as the official second run started from the inductive checkpoint.
* **fully**: all classes, all labels.

Evaluation is sliding-window (or whole-image) at the resized scale, scores resized back to the
original image size, one confusion matrix over the whole set (:mod:`zegclip.training.metrics`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn

from zegclip.common.errors import CheckpointError, ConfigError, NonFiniteLossError
from zegclip.common.metric_names import SUMMARY_KEYS
from zegclip.model.checkpoint import (
    LIGHTNING_FORMAT_KEY,
    VERSION,
    config_differences,
    describe_differences,
    is_frozen_clip_key,
    read_checkpoint,
)
from zegclip.model.inference import default_seen_bias
from zegclip.model.labels import inductive_targets, seen_lookup, transductive_targets
from zegclip.model.loss import CrossEntropySegLoss, FocalDiceLoss
from zegclip.model.text import load_text_embeddings
from zegclip.model.zegclip import ZegCLIP, ZegCLIPConfig
from zegclip.training.console import quiet_lightning
from zegclip.training.metrics import ZeroShotSegmentationMetrics
from zegclip.training.optim import build_optimizer

quiet_lightning()  # also in the processes a spawned strategy (ddp_spawn) starts

SETTINGS = ("inductive", "transductive", "fully")


def check_setting(
    setting: str,
    unseen: Any = (1,),
    init_from: str | None = None,
    has_model: bool = False,
    inductive_steps: int = 0,
) -> None:
    """The setting exists; transductive runs have unseen classes and start from inductive weights:
    their own inductive stage (``inductive_steps``), a checkpoint (``init_from``) or a given model."""
    if setting not in SETTINGS:
        raise ConfigError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if setting == "transductive" and not unseen:
        raise ConfigError("setting=transductive needs unseen classes (dataset.unseen is empty)")
    if inductive_steps and setting != "transductive":
        raise ConfigError(
            f"an inductive stage (inductive_steps={inductive_steps}) belongs to setting=transductive"
        )
    if setting == "transductive" and not (init_from or has_model or inductive_steps > 0):
        raise ConfigError(
            "setting=transductive starts from inductive weights: run its inductive stage "
            "(inductive_stage.steps > 0, the default) or set init_from=PATH (an inductive checkpoint)"
        )


def check_prompts(
    class_names: list[str], text_prompts: list[str] | None, prompt_to_class: list[int] | None
) -> tuple[list[str], list[int]]:
    """``(prompts, prompt_to_class)``: the defaults (the class names, prompt p = class p) or the given
    ones, checked (one class index in range per prompt)."""
    prompts = list(class_names) if text_prompts is None else [str(p) for p in text_prompts]
    if prompt_to_class is None:
        if len(prompts) != len(class_names):
            raise ValueError(
                f"{len(prompts)} text prompts for {len(class_names)} classes: give prompt_to_class"
            )
        return prompts, list(range(len(class_names)))
    mapping = [int(c) for c in prompt_to_class]
    if len(mapping) != len(prompts) or any(not 0 <= c < len(class_names) for c in mapping):
        raise ValueError(
            f"prompt_to_class must give one class index in 0..{len(class_names) - 1} for each of the "
            f"{len(prompts)} text prompts, got {mapping[:10]}{'...' if len(mapping) > 10 else ''} "
            f"({len(mapping)} entries)"
        )
    return prompts, mapping


def build_criterion(loss: dict[str, Any] | None) -> tuple[torch.nn.Module, str, bool]:
    """``(criterion, loss name, deep supervision)`` from the ``loss`` config."""
    args = dict(loss or {})
    name = args.pop("name", "focal_dice")
    # Deep supervision of every decoder layer: the official loss has weights for it, but the
    # official head never hands the auxiliary layers over, so it is off by default.
    aux_layers = bool(args.pop("aux_layers", False))
    implementation = args.pop("implementation", None)  # of focal_dice; one loss for cross_entropy
    if name == "focal_dice":
        return (
            FocalDiceLoss(**args, **({"implementation": implementation} if implementation else {})),
            name,
            aux_layers,
        )
    if name == "cross_entropy":
        return CrossEntropySegLoss(**args), name, aux_layers
    raise ConfigError(f"loss.name must be 'focal_dice' or 'cross_entropy', got {name!r}")


class ZegCLIPModule(L.LightningModule):
    """Frozen CLIP + prompts + decoder, trained with the setting's label handling.

    All arguments are plain Python values (saved as hyper-parameters, so checkpoints load with
    ``weights_only=True``).

    Args:
        model_config: :class:`ZegCLIPConfig` as a dict.
        class_names, seen, unseen: the dataset's vocabulary and zero-shot split.
        setting: ``inductive``, ``transductive`` or ``fully``.
        templates: ``"single"``, ``"multi"`` or a list of ``{}`` templates.
        text_embedding_file: precomputed ``(C, D)`` embeddings of all classes instead of the tower.
        optimizer: arguments of :func:`zegclip.training.optim.build_optimizer` (lr, weight_decay, ...).
        loss: ``{"name": "focal_dice" | "cross_entropy", ...weights}``.
        evaluation: ``mode`` (slide/whole), ``crop``, ``stride``, ``seen_bias`` (None: 0.1 when
            inductive, else 0), ``window_batch``, ``scales`` / ``flip`` (test-time augmentation;
            None / False: off).
        init_from: checkpoint whose prompts and decoder initialise this run (transductive).
        compile: ``torch.compile`` the model's forward.
        log_images: images per validation sent to W&B as mask overlays.
        save_frozen_clip: keep the frozen CLIP weights in Lightning checkpoints (False: smaller
            files; CLIP is then rebuilt from ``model_config.clip.weights``).
        dataset_name: recorded in checkpoint metadata.
        model: an already built model (evaluation of a loaded checkpoint); not a hyper-parameter.
        seed: base of the per-step random state (dropout), see :meth:`on_train_batch_start`.
        text_prompts, prompt_to_class: evaluation scores these P names (default: the class names)
            and maps each pixel's best prompt to its label class ``prompt_to_class[p]`` (default:
            prompt p is class p); VOC-20b: 59 names, the last 39 predict background. Training
            needs one prompt per class.
        text_synonyms: how class names listing synonyms (``"a, b"``) are embedded: None (the whole
            string), ``"average"`` (CAT-Seg's rule) or ``"first"`` (:mod:`zegclip.model.text`).
        metadata: ignored (recomputed); accepted so that ``load_from_checkpoint`` works.
        inductive_steps: transductive only: the first K steps train inductively (0: none, the run
            starts from ``init_from``); ``inductive_schedule_steps`` is the length of their poly
            schedule (default 2K: the inductive recipe, of which they are the first half) and
            ``inductive_seen_bias`` their calibration (default: the inductive setting's).
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        class_names: list[str],
        seen: list[int],
        unseen: list[int],
        setting: str = "inductive",
        templates: str | list[str] = "single",
        text_embedding_file: str | None = None,
        optimizer: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        init_from: str | None = None,
        compile: bool = False,
        log_images: int = 4,
        save_frozen_clip: bool = True,
        dataset_name: str | None = None,
        model: ZegCLIP | None = None,
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
        text_prompts: list[str] | None = None,
        prompt_to_class: list[int] | None = None,
        inductive_steps: int = 0,
        inductive_schedule_steps: int | None = None,
        inductive_seen_bias: float | None = None,
        text_synonyms: str | None = None,
    ) -> None:
        super().__init__()
        check_setting(setting, unseen, init_from, model is not None, int(inductive_steps))
        self.save_hyperparameters(ignore=["model", "metadata"])
        self.model = model if model is not None else ZegCLIP(ZegCLIPConfig.from_dict(model_config))
        self.class_names = list(class_names)
        self.seen = [int(i) for i in seen]
        self.unseen = [int(i) for i in unseen]
        self.setting = setting
        self.text_prompts, self.prompt_to_class = check_prompts(
            self.class_names, text_prompts, prompt_to_class
        )
        self.evaluation = {
            "mode": "slide",
            "crop": None,
            "stride": None,
            "seen_bias": None,
            "window_batch": 8,
            "scales": None,
            "flip": False,
        }
        self.evaluation.update(evaluation or {})
        if self.evaluation["seen_bias"] is None:
            self.evaluation["seen_bias"] = default_seen_bias(setting)
        self.optimizer_args = dict(optimizer or {})
        self.criterion, self.loss_name, self.aux_layers = build_criterion(loss)
        self.inductive_steps = int(inductive_steps)
        self.inductive_seen_bias = (
            default_seen_bias("inductive") if inductive_seen_bias is None else float(inductive_seen_bias)
        )
        self.register_buffer("seen_lookup", seen_lookup(len(self.class_names), self.seen), persistent=False)
        self.register_buffer(
            "prompt_lookup", torch.tensor(self.prompt_to_class, dtype=torch.long), persistent=False
        )
        self._plain_prompts = self.text_prompts == self.class_names and self.prompt_to_class == list(
            range(len(class_names))
        )
        seen_set = set(self.seen)
        self.prompt_seen = [p for p, c in enumerate(self.prompt_to_class) if c in seen_set]
        """Prompts of seen classes: those the calibration lowers at evaluation."""
        self.val_metrics = ZeroShotSegmentationMetrics(self.class_names, self.seen, self.unseen)
        self.test_metrics = ZeroShotSegmentationMetrics(self.class_names, self.seen, self.unseen)
        self._text: torch.Tensor | None = None
        self._prompt_text: torch.Tensor | None = None
        self._image_samples: list[dict[str, Any]] = []
        self.plots_dir: str | None = None
        """Set (by the runner) to write evaluation plots after testing: ``<plots_dir>/plots/*.png``."""
        self.test_stage = "test"
        """Prefix of the test stage's metrics; ``tune`` when the test set is the tuning split."""
        # a compiled function, not a module attribute, so the state dict keeps plain names
        self._compiled_forward = torch.compile(self.model.forward) if compile else None
        self.hparams["metadata"] = self.metadata()
        if init_from:
            self.load_initial_weights(init_from)

    # -- bookkeeping ---------------------------------------------------------------------------

    def stage_setting(self, step: int) -> str:
        """The setting that trains step ``step + 1`` (``global_step`` = ``step`` steps done)."""
        return "inductive" if step < self.inductive_steps else self.setting

    def weights_setting(self) -> str:
        """The setting the current weights were trained in (their stage's, during a staged run)."""
        if not self.inductive_steps or self._trainer is None:  # one stage, or not in a run: the run's setting
            return self.setting
        return "inductive" if self.global_step <= self.inductive_steps else self.setting

    def seen_bias(self) -> float:
        """Calibration of the current weights: their stage's (the inductive stage's own offset)."""
        return (
            self.inductive_seen_bias
            if self.weights_setting() != self.setting
            else float(self.evaluation["seen_bias"])
        )

    def metadata(self) -> dict[str, Any]:
        """What ``zegclip.load`` needs to use a checkpoint of this run for inference."""
        return {
            "source": "zegclip",
            "dataset": self.hparams.get("dataset_name"),
            "class_names": self.class_names,
            "seen": self.seen,
            "unseen": self.unseen,
            "setting": self.weights_setting(),
            "seen_bias": self.seen_bias(),
            "templates": self.hparams.get("templates"),
            "text_synonyms": self.hparams.get("text_synonyms"),
            "test_mode": self.evaluation["mode"],
            "crop": self.evaluation["crop"] or self.model.config.image_size,
            "stride": self.evaluation["stride"] or self.model.config.image_size * 5 // 6,
        }

    def load_initial_weights(self, path: str) -> None:
        """Copy the trainable weights (prompts, decoder) of another checkpoint into this model."""
        config, state, _ = read_checkpoint(path)
        ours = self.model.state_dict()
        trainable = {k for k in ours if not is_frozen_clip_key(k, self.model.config)}
        missing = sorted(trainable - set(state))
        mismatched = sorted(k for k in trainable & set(state) if state[k].shape != ours[k].shape)
        if missing or mismatched:
            differences = config_differences(config.to_dict(), self.model.config.to_dict())
            raise CheckpointError(
                f"init_from={path!r} does not fit this model: "
                + (
                    describe_differences(differences)
                    if differences
                    else f"missing {missing[:6]}, shape mismatch {mismatched[:6]}"
                )
                + " (start from a checkpoint of the same architecture, or give this run its values)"
            )
        self.model.load_state_dict({k: state[k] for k in trainable}, strict=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[LIGHTNING_FORMAT_KEY] = VERSION  # a newer format is refused with a clear message
        # the weights' own setting and calibration: a staged run's inductive-stage checkpoints load as
        # inductive
        checkpoint.setdefault("hyper_parameters", {})["metadata"] = self.metadata()
        if not self.hparams.get("save_frozen_clip", True):
            config = self.model.config
            checkpoint["state_dict"] = {
                k: v
                for k, v in checkpoint["state_dict"].items()
                if not (k.startswith("model.") and is_frozen_clip_key(k.removeprefix("model."), config))
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith("model.") and is_frozen_clip_key(key.removeprefix("model."), self.model.config):
                state.setdefault(key, value)

    # -- text --------------------------------------------------------------------------------

    def text_embeddings(self) -> torch.Tensor:
        """All classes' embeddings ``(C, D)``, computed once on the module's device."""
        if self._text is None or self._text.device != self.device:
            if self.hparams.get("text_embedding_file"):
                emb = load_text_embeddings(self.hparams["text_embedding_file"], len(self.class_names))
            else:
                emb = self.model.class_embeddings(
                    self.class_names,
                    self.hparams.get("templates") or "single",
                    self.hparams.get("text_synonyms"),
                )
            self._text = emb.to(self.device)
        return self._text

    def prompt_embeddings(self) -> torch.Tensor:
        """The evaluation's ``(P, D)`` embeddings, one per text prompt (:meth:`text_embeddings`
        when the prompts are the class names)."""
        if self.text_prompts == self.class_names:
            return self.text_embeddings()
        if self._prompt_text is None or self._prompt_text.device != self.device:
            if self.hparams.get("text_embedding_file"):
                emb = load_text_embeddings(self.hparams["text_embedding_file"], len(self.text_prompts))
            else:
                emb = self.model.class_embeddings(
                    self.text_prompts,
                    self.hparams.get("templates") or "single",
                    self.hparams.get("text_synonyms"),
                )
            self._prompt_text = emb.to(self.device)
        return self._prompt_text

    # -- training ------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        if not self._plain_prompts:
            raise ValueError(
                f"dataset {self.hparams.get('dataset_name')!r} scores {len(self.text_prompts)} text prompts "
                f"for {len(self.class_names)} label classes (text_prompts / prompt_to_class): such a "
                "benchmark is for evaluation (eval.py); training embeds one prompt per class, the class names"
            )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Random draws (dropout) depend only on (seed, step, rank): a run resumed from a
        # checkpoint continues exactly as the uninterrupted run would have.
        seed = int(self.hparams.get("seed", 0))
        torch.manual_seed((seed * 1_000_003 + self.global_step * 101 + self.global_rank) % (2**63 - 1))
        if self.inductive_steps and self.global_step == self.inductive_steps:
            self._start_second_stage()

    def _start_second_stage(self) -> None:
        """Stage 2 starts as the official second run does (``load_from``: weights only): fresh
        optimiser moments (the schedule restarts by itself, see
        :func:`zegclip.training.optim.build_optimizer`). Idempotent: called before each micro-batch of the
        first stage-2 step."""
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()

    def train_classes(self, setting: str) -> list[int]:
        """The text set of training: the seen classes (inductive) or all."""
        return self.seen if setting == "inductive" else list(range(len(self.class_names)))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        setting = self.stage_setting(self.global_step)
        text = self.text_embeddings()[self.train_classes(setting)]
        out = (self._compiled_forward or self.model)(images, text)
        logits = out.logits_for(labels.shape[-2:])  # grid logits: the loss upsamples them in chunks
        if setting == "inductive":
            targets = inductive_targets(labels, self.seen_lookup)
        elif setting == "transductive":
            targets = transductive_targets(labels, logits, self.unseen)
        else:
            targets = labels
        result = self.criterion(logits, targets)
        if self.aux_layers:
            for aux in out.layer_logits[:-1]:
                if logits.shape[-2:] != aux.shape[-2:]:
                    aux = F.interpolate(aux, size=out.mask_size, mode="bilinear", align_corners=False)
                result.total = result.total + self.criterion(aux, targets).total
        self._check_finite(result.total)
        batch_size = images.shape[0]
        self.log("train/loss", result.total, prog_bar=True, batch_size=batch_size)
        if self.loss_name == "focal_dice":  # the terms the loss has (cross-entropy has one)
            self.log("train/loss_focal", result.loss_mask, batch_size=batch_size)
            self.log("train/loss_dice", result.loss_dice, batch_size=batch_size)
        self.log("train/pAcc", result.accuracy / 100, batch_size=batch_size)  # a fraction, as val/pAcc
        if (
            self.inductive_steps
        ):  # a staged run: which stage each step belongs to (1 inductive, 2 transductive)
            self.log("train/stage", 1.0 if setting == "inductive" else 2.0, batch_size=batch_size)
        return result.total

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop at the first non-finite loss (on every rank at once), before it reaches the weights."""
        finite = bool(torch.isfinite(loss.detach()).item())
        if self._trainer is not None:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        if not finite:
            step, last = self.global_step + 1, self.last_good_checkpoint()
            then = f"or resume from it (ckpt_path={last})" if last else "and start again"
            raise NonFiniteLossError(
                f"the training loss is {loss.item()} at step {step}: training stopped before the update. "
                f"Last good checkpoint: {last or 'none written yet'}. "
                f"Lower optimizer.lr, check the data, {then}."
            )

    def last_good_checkpoint(self) -> str | None:
        """The newest checkpoint this run wrote or started from (see :class:`LastCheckpoint`)."""
        from zegclip.training.checkpointing import LastCheckpoint

        if self._trainer is None:
            return None
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, LastCheckpoint):
                return callback.last_good
        return None

    def configure_optimizers(self) -> dict[str, Any]:
        args = dict(self.optimizer_args)
        if "betas" in args:
            args["betas"] = tuple(args["betas"])
        stages = {
            "restart_at": self.inductive_steps,
            "first_schedule_steps": self.hparams.get("inductive_schedule_steps"),
        }
        optimizer, scheduler = build_optimizer(
            self.model, max_steps=int(self.trainer.max_steps), **stages, **args
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation ----------------------------------------------------------------------------

    def _segment_args(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "text_embeddings": self.prompt_embeddings(),
            "seen": self.prompt_seen,
            "seen_bias": self.seen_bias(),
            "mode": ev["mode"],
            "crop": ev["crop"],
            "stride": ev["stride"],
            "window_batch": ev["window_batch"],
            "scales": ev["scales"],
            "flip": bool(ev["flip"]),
        }

    @torch.no_grad()
    def predict_scores(self, image: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """Calibrated scores ``(B, P, *out_size)`` of the text prompts for resized images ``(B, 3, h, w)``
        of one size (P = C unless the datamodule gives other prompts). Evaluation uses
        :meth:`predict_labels`, which never holds these full-size scores."""
        scores = self.model.segment(image, **self._segment_args())
        return F.interpolate(scores, size=out_size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict_labels(self, image: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """Label classes ``(B, *out_size)``: the argmax of :meth:`predict_scores` (ties to the lower
        prompt), mapped through ``prompt_to_class``; computed a chunk of classes at a time."""
        labels = self.model.segment_labels(image, out_size=out_size, **self._segment_args())
        return labels if self._plain_prompts else self.prompt_lookup[labels]

    def _evaluate_batch(
        self, batch: dict[str, Any], metrics: ZeroShotSegmentationMetrics, keep_samples: bool
    ) -> None:
        images, labels, metas = batch["image"], batch["label"], batch["meta"]
        sizes = [(tuple(int(v) for v in m["img_size"]), tuple(int(v) for v in m["ori_size"])) for m in metas]
        if len(set(sizes)) == 1:  # same sizes (e.g. generated data): one pass for the whole batch
            (h, w), (height, width) = sizes[0]
            preds = self.predict_labels(images[:, :, :h, :w], (height, width))
            targets = labels[:, :height, :width]
            metrics.update(preds, targets)
            pairs = list(zip(preds, targets, [images[i, :, :h, :w] for i in range(len(metas))], metas))
        else:
            pairs = []
            for i, ((h, w), (height, width)) in enumerate(sizes):
                pred = self.predict_labels(images[i : i + 1, :, :h, :w], (height, width))
                target = labels[i : i + 1, :height, :width]
                metrics.update(pred, target)
                pairs.append((pred[0], target[0], images[i, :, :h, :w], metas[i]))
        limit = int(self.hparams.get("log_images") or 0)
        for pred, target, image, meta in pairs:
            if not keep_samples or len(self._image_samples) >= limit:
                break
            self._image_samples.append(
                {
                    "image": image.cpu(),
                    "pred": pred.cpu(),
                    "label": target.cpu(),
                    "name": str(meta.get("name", "")),
                }
            )

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()  # also guards against ddp_spawn aliasing metric states
        self._image_samples = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.val_metrics, keep_samples=not self.trainer.sanity_checking)

    def on_validation_epoch_end(self) -> None:
        summary = self.val_metrics.summary()
        self._log_summary("val", summary)
        if self._image_samples and not self.trainer.sanity_checking:
            from zegclip.training.wandb_logging import log_wandb_masks

            log_wandb_masks(self.loggers, self._image_samples, self.class_names, self.logging_step())
        self._image_samples = []

    def logging_step(self) -> int:
        """The step Lightning logs this moment's metrics at (``self.log`` uses the number of
        batches that stepped *before* the current one, i.e. ``global_step - 1`` at validation)."""
        return int(self.trainer.fit_loop.epoch_loop._batches_that_stepped)

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()
        self._image_samples = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.test_metrics, keep_samples=self.plots_dir is not None)

    def on_test_epoch_end(self) -> None:
        confmat = self.test_metrics.compute()  # every rank: the matrix is summed across processes
        self._log_summary(self.test_stage, self.test_metrics.summary())
        if self.plots_dir is not None and self.trainer.is_global_zero:
            self._write_plots(confmat)
        self._image_samples = []

    def _write_plots(self, confmat: torch.Tensor) -> None:
        """``plots/*.png`` in ``plots_dir`` and to W&B; a plotting error only warns."""
        try:
            from zegclip.training.plots import write_evaluation_plots
            from zegclip.training.wandb_logging import log_plots_to_wandb

            paths = write_evaluation_plots(
                self.plots_dir, confmat.cpu(), self.class_names, self.seen, self.unseen, self._image_samples
            )
            log_plots_to_wandb(self.loggers, paths, self.global_step)
        except Exception as err:  # the metrics matter more than their pictures
            rank_zero_warn(f"evaluation plots not written: {type(err).__name__}: {err}")

    def _log_summary(self, stage: str, summary: dict[str, Any]) -> None:
        values = {f"{stage}/{k}": float(summary[k]) for k in SUMMARY_KEYS if summary[k] == summary[k]}
        values.update({f"{stage}/IoU/{name}": v for name, v in summary["IoU_per_class"].items() if v == v})
        # every rank holds the same (already reduced) numbers: no further sync needed
        self.log_dict(values, sync_dist=False, rank_zero_only=False)
