"""The config types: what a run learns (:class:`RecipeConfig`) and how it computes (:class:`ComputeConfig`),
joined in :class:`TrainConfig`; validation on creation. The named presets are :mod:`~ghostmixnet.config.recipes`.

A config fully describes a run; it is written into every run folder and checkpoint (one flat dict of
both parts' fields), so that any checkpoint can rebuild its model and any run can be resumed or repeated.
A resumed run keeps its recipe and may change any compute setting: the two are separate types, so which
fields a resume may change is a matter of which part they belong to, not a list kept by hand.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import textwrap
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..data.cifar import CLASSES, MEAN, STD
from ..data.resolution import ResolutionSchedule
from ..data.sources import normalization_of
from ..data.splits import Splits
from ..errors import CheckpointError
from ..files import write_text_atomic
from ..model.architectures import ARCHITECTURES

AUGMENTATIONS = ("paper", "basic", "none")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
AUGMENT_BACKENDS = ("torchvision", "batched")
SCHEDULES = ("restarts", "onecycle")
OPTIMIZERS = ("adamw", "sgd")
DATASETS = ("cifar10", "cifar100", "cifar100-coarse", "folder")
NORMALIZATIONS = ("data", "cifar10")
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
STEP_GRAPHS = ("model", "loss", "whole")
DEPTHWISE = ("conv", "shifts")
CHOICES: dict[str, tuple[str, ...]] = {
    "model": tuple(ARCHITECTURES), "dataset": DATASETS, "normalize": NORMALIZATIONS, "augment": AUGMENTATIONS,
    "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "augment_backend": AUGMENT_BACKENDS, "compile_mode": COMPILE_MODES,
    "precision": PRECISIONS, "step_graph": STEP_GRAPHS, "depthwise": DEPTHWISE}
"""The fields that take one of a few names, and the names."""


def _unknown(*names: str, of: Any) -> list[str]:
    return [f"{name} {getattr(of, name)!r} is unknown; choose one of: {', '.join(CHOICES[name])}" for name in names
            if getattr(of, name) not in CHOICES[name]]


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ValueError("invalid configuration: " + "; ".join(problems))


_WORDS = {"int": "an integer", "float": "a finite number", "str": "text", "bool": "true or false", "None": "null"}


def _fits(value: Any, annotation: str) -> bool:
    """Whether ``value`` is of the type a field's annotation (a string: the module's annotations are postponed)
    names: ``int``, ``float``, ``str``, ``bool``, ``tuple[...]`` of str or numbers, joined by ``|``. A bool is no
    number here, and a float must be finite (NaN passes every comparison a range check makes)."""
    for part in annotation.split(" | "):
        if (part == "None" and value is None
                or part == "int" and isinstance(value, int) and not isinstance(value, bool)
                or part == "float" and isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value)
                or part == "str" and isinstance(value, str)
                or part == "bool" and isinstance(value, bool)):
            return True
        if part.startswith("tuple[") and isinstance(value, tuple):
            inner = "str" if part.startswith("tuple[str") else "float"
            if all(_fits(v, inner) for v in value):
                return True
    return False


def _raise_if_mistyped(config: Any) -> None:
    """Check every field's type before any range check, which would fail on a wrong type in Python's words (a
    config read from a file can hold anything): one line naming each field, what it must be and what it is."""
    problems = []
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name != "compile" and not _fits(value, str(f.type)):  # compile: its own check says which words
            kinds = " or ".join(_WORDS.get(p, "a list of " + ("names" if "str" in p else "numbers"))
                                for p in str(f.type).split(" | "))
            problems.append(f"{f.name} must be {kinds}, got {value!r}"[:160])
    _raise_if(problems)


@dataclass(frozen=True)
class RecipeConfig:
    """What a training run learns: the model, the data it sees, the optimisation and the selection. The
    defaults are the paper's recipe."""

    model: str = "ghostmixnet"
    """Registered model name (``ghostmixnet``, ``resnet``, ``resnet-se``)."""
    width: float = 1.0
    """Channel width multiplier; 1.0 is the paper's model."""
    num_classes: int = 10
    """Output classes (10 for CIFAR-10); a run on other data takes it from the data's class list."""
    classes: tuple[str, ...] | None = None
    """The class names in label order, set by the run from its data; None: CIFAR-10's ten with 10 classes
    (``class 0``, ``class 1``, ... with another number)."""
    mean: tuple[float, float, float] | None = None
    """Per-channel mean (of pixels scaled to [0, 1]) the inputs are normalised with, measured on the training
    split by the run for data other than CIFAR-10; None: CIFAR-10's constants."""
    std: tuple[float, float, float] | None = None
    """Per-channel standard deviation of the normalisation, as ``mean``; None: CIFAR-10's constants."""
    dropout: float = 0.2
    """Dropout probability before the classifier."""
    init: str | None = None
    """Start from trained weights instead of random ones: ``pretrained`` (the weights shipped with the
    package) or a checkpoint, run folder or ``.safetensors`` file of the same model and width. With another
    ``num_classes`` every layer but the classifier starts from them (fine-tuning). None: random."""
    backbone_lr_scale: float = 1.0
    """Learning rate of every layer but the classifier as a share of ``lr``: below 1 changes pretrained
    features more gently than the new classifier learns (fine-tuning); 0 freezes them."""
    freeze_epochs: int = 0
    """Fine-tuning: for the first this many epochs only the classifier learns, on the pretrained layers' features as
    loaded (their weights and BatchNorm statistics held, and no gradient computed through them: such an epoch costs
    about a third of a full one); every layer trains after. 0: none."""
    recipe: str = "paper"
    """Name of the preset this config started from (informational)."""
    epochs: int = 200
    """Training epochs."""
    batch_size: int = 128
    """Images per optimizer step across all processes (the global batch); with N processes each takes
    batch_size / N, so the learning rate stays right as N changes. The last, partial batch is kept."""
    optimizer: str = "adamw"
    """``adamw`` (decoupled weight decay, the paper's) or ``sgd`` (Nesterov momentum ``momentum``, weight decay
    added to the gradient)."""
    lr: float = 1e-3
    """Peak learning rate."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.999
    """AdamW beta2."""
    momentum: float = 0.9
    """SGD: Nesterov momentum."""
    weight_decay: float = 1e-3
    """Weight decay (decoupled for AdamW, L2 on the gradient for SGD)."""
    decay_norm_and_bias: bool = True
    """Apply weight decay to BatchNorm scales and shifts and to biases too; False decays only the
    convolution and linear weights (the scales of normalised layers gain nothing from shrinking)."""
    zero_init_residual: bool = False
    """Start the last BatchNorm scale of every residual branch at zero, so each block begins as its
    shortcut and the network trains as a shallower one first."""
    restart_epochs: int = 50
    """Cosine warm restarts: epochs in the first cycle (T_0)."""
    restart_mult: int = 1
    """Cosine warm restarts: cycle length multiplier (T_mult)."""
    min_lr: float = 1e-4
    """Cosine warm restarts: learning rate at the bottom of each cycle (eta_min)."""
    schedule: str = "restarts"
    """Learning-rate schedule: ``restarts`` (cosine warm restarts, stepped once per epoch: the paper's) or
    ``onecycle`` (linear warm-up to ``lr``, then linear decay to zero at the last step, stepped every step)."""
    warmup: float = 0.0
    """``onecycle``: the share of all steps spent warming up."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights (and BatchNorm statistics) with this decay per
    step; 0 keeps none. With one, validation scores both and keeps the better as ``best.pt``."""
    tta: bool = False
    """Evaluate (validation and test) on each image and its mirror image, averaging the logits."""
    tta_shift: int = 0
    """With ``tta``: also average the views shifted by this many pixels diagonally both ways (and
    their mirrors: six views in all); 0 keeps the two mirror views."""
    resolutions: str = ""
    """Progressive resizing: train the first steps on smaller images, e.g. ``16:0.25,24:0.5`` is 16 pixels for
    the first quarter of the steps, 24 until half-way, the full 32 after (each batch is resized after its
    augmentation); empty trains every step at full size. Evaluation is always at full size."""
    val_every: int = 1
    """Validate every this many epochs, and always after the last (validation costs time short runs lack)."""
    label_smoothing: float = 0.1
    """Cross-entropy label smoothing."""
    distill: str | None = None
    """Distil from a teacher: ``pretrained`` (the shipped model) or a checkpoint, run folder or ``.safetensors``
    file of a model of the same classes. Its outputs are computed once per cached view (``distill_views``) and
    kept in a cache file, not recomputed at each step. None: no teacher."""
    distill_views: int = 8
    """With ``distill``: fixed augmented views of each training image whose teacher outputs are cached; epoch
    ``e`` trains on view ``e mod distill_views``."""
    distill_alpha: float = 0.9
    """With ``distill``: the loss's share from matching the teacher; the rest is cross-entropy with the labels."""
    distill_temperature: float = 4.0
    """With ``distill``: the softmax temperature at which the student's outputs are compared with the teacher's."""
    augment: str = "paper"
    """Per-image augmentation: ``paper`` (flip, crop, perspective, posterize, jitter, AutoAugment),
    ``basic`` (flip + crop) or ``none``."""
    degrade: float = 0.0
    """Share of training images given, after the augmentation, one degradation a photo meets: JPEG compression,
    noise, blur or low contrast, at a strength drawn per image (``ghostmixnet.data.degrade``); 0: none."""
    mix_prob: float = 1.0
    """Probability that a batch is mixed (Mixup or CutMix); 0 turns batch mixing off."""
    mixup_share: float = 0.5
    """Probability that a mixed batch uses Mixup rather than CutMix."""
    mixup_alpha: float = 0.2
    """Mixup: lambda ~ Beta(alpha, alpha)."""
    cutmix_alpha: float = 1.0
    """CutMix: lambda ~ Beta(alpha, alpha) before it is recomputed from the box's area."""
    dataset: str = "cifar10"
    """The data: ``cifar10`` or ``cifar100`` (fine labels; ``cifar100-coarse``: its 20 coarse ones) in their
    official python layout, or ``folder``: one sub-folder of images per class in ``--data-dir``, or ``train/``
    and ``val/`` (and optionally ``test/``) folders of such sub-folders."""
    image_size: int = 32
    """The side, in pixels, of the square images the model trains on and takes: CIFAR's are 32; a folder's images
    are centre-cropped and resized to it when read (a multiple of 8 from 16 to 512). The model pools its last
    feature map to the same 2x2 grid at any size, so weights trained at one size load at another, and 32 is
    the shipped weights' own. Stored with the model: every command reads and resizes images to it."""
    normalize: str = "data"
    """Data other than CIFAR-10: normalise the inputs with the mean and std measured on its training split
    (``data``) or with CIFAR-10's (``cifar10``: those the shipped weights learned with)."""
    holdout: float = 0.1
    """``folder`` data: the share of the images held out, stratified and seeded by ``split_seed``, as the
    validation split when there is no ``val/`` folder, and again as the test set when there is no
    ``test/`` folder (CIFAR's splits use ``val_size``)."""
    val_size: int = 5000
    """Images held out of the training set, stratified, to select checkpoints; 0 selects on the test
    set as the paper did (then the test accuracy is not an unbiased estimate)."""
    split_seed: int = 0
    """Seed of the validation split, kept apart from ``seed`` so runs with different seeds share it."""
    train_subset: int | None = None
    """Train on a stratified random subset of this many images (quick runs); None uses all."""
    seed: int = 0
    """Seed of initialisation, shuffling, augmentation, mixing and dropout."""

    def __post_init__(self) -> None:
        _raise_if_mistyped(self)
        _raise_if(self.recipe_problems())

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the model's classes in label order (:attr:`classes`, or its defaults)."""
        if self.classes is not None:
            return self.classes
        return CLASSES if self.num_classes == len(CLASSES) else tuple(f"class {i}" for i in range(self.num_classes))

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) per channel the model's inputs are normalised with."""
        return (self.mean or MEAN), (self.std or STD)

    @property
    def selects_on_test(self) -> bool:
        """Whether the run selected its checkpoints on the test set: ``val_size`` 0 on CIFAR data (a folder always
        holds out a validation split)."""
        return self.val_size == 0 and self.dataset != "folder"

    def data_fields(self) -> dict[str, Any]:
        """How the run's data is split, as keywords of :func:`~ghostmixnet.data.sources.load_data`."""
        return {"val_size": self.val_size, "holdout": self.holdout, "split_seed": self.split_seed,
                "image_size": self.image_size}

    def _data_problems(self) -> list[str]:
        problems = []
        if self.classes is not None:
            if len(self.classes) != self.num_classes:
                problems.append(f"classes names {len(self.classes)} classes but num_classes is {self.num_classes}: "
                                "the model's logits and its class list must have the same length")
            if not all(isinstance(c, str) and c.strip() for c in self.classes):
                problems.append("classes must be non-empty names")
            elif len(set(self.classes)) != len(self.classes):
                problems.append("classes must not repeat a name")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or not all(math.isfinite(v) and 0 <= v <= 1 for v in value)):
                problems.append(f"{name} must be three numbers in [0, 1], got {value}")
        if self.std is not None and len(self.std) == 3 and min(self.std) <= 0:
            problems.append(f"std must be positive, got {self.std}")
        if not (16 <= self.image_size <= 512 and self.image_size % 8 == 0):
            problems.append(f"image_size must be a multiple of 8 from 16 to 512 pixels, got {self.image_size}")
        elif self.image_size != 32 and self.dataset != "folder":
            problems.append(f"{self.dataset}'s images are 32x32; image_size {self.image_size} is for folder data")
        if self.image_size != 32 and self.resolutions:
            problems.append("progressive resizing (resolutions) trains below 32 pixels; drop --resolutions with "
                            "--image-size")
        if not 0.0 < self.holdout < 0.5:
            problems.append(f"holdout is a share of a folder's images and must be in (0, 0.5), got {self.holdout}")
        if self.freeze_epochs < 0:
            problems.append(f"freeze_epochs must not be negative, got {self.freeze_epochs}")
        elif self.freeze_epochs and self.init is None:
            problems.append("freeze_epochs holds pretrained layers while the classifier learns; give --init (the "
                            "finetune recipe's pretrained) or drop --freeze-epochs")
        if not 0.0 <= self.backbone_lr_scale <= 1.0 or not math.isfinite(self.backbone_lr_scale):
            problems.append(f"backbone_lr_scale must be in [0, 1], got {self.backbone_lr_scale}")
        return problems

    def recipe_problems(self) -> list[str]:
        """What is wrong with the recipe fields (empty when nothing is)."""
        problems = _unknown("model", "dataset", "normalize", "augment", "optimizer", "schedule", of=self)
        problems += self._data_problems()
        if not 0 <= self.tta_shift <= 8:
            problems.append(f"tta_shift must be in [0, 8] pixels, got {self.tta_shift}")
        if not 0.0 <= self.warmup < 1.0:
            problems.append(f"warmup is a share of the steps and must be in [0, 1), got {self.warmup}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1) (0 turns the average off), got {self.ema_decay}")
        try:
            ResolutionSchedule.parse(self.resolutions)
        except ValueError as e:
            problems.append(f"resolutions {self.resolutions!r}: {e}")
        if self.val_every < 1:
            problems.append(f"val_every must be at least 1, got {self.val_every}")
        floats = {"width": self.width, "lr": self.lr, "weight_decay": self.weight_decay, "min_lr": self.min_lr,
                  "mixup_alpha": self.mixup_alpha, "cutmix_alpha": self.cutmix_alpha}
        problems += [f"{k} must be a finite number, got {v}" for k, v in floats.items() if not math.isfinite(v)]
        positive = {"width": self.width, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "restart_epochs": self.restart_epochs, "restart_mult": self.restart_mult,
                    "num_classes": self.num_classes}
        problems += [f"{k} must be positive, got {v}" for k, v in positive.items() if not v > 0]
        unit = {"dropout": self.dropout, "beta1": self.beta1, "beta2": self.beta2, "momentum": self.momentum,
                "label_smoothing": self.label_smoothing, "mix_prob": self.mix_prob, "mixup_share": self.mixup_share,
                "degrade": self.degrade}
        problems += [f"{k} must be in [0, 1], got {v}" for k, v in unit.items() if not 0.0 <= v <= 1.0]
        if self.dropout >= 1.0:
            problems.append("dropout must be below 1")
        if self.mixup_alpha <= 0 or self.cutmix_alpha <= 0:
            problems.append("mixup_alpha and cutmix_alpha must be positive")
        if self.weight_decay < 0 or self.min_lr < 0:
            problems.append("weight_decay and min_lr must not be negative")
        if self.min_lr > self.lr:
            problems.append(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.val_size < 0:
            problems.append(f"val_size must not be negative, got {self.val_size}")
        if self.train_subset is not None and self.train_subset < 1:
            problems.append(f"train_subset must be at least 1, got {self.train_subset}")
        problems += self._distill_problems()
        return problems


    def _distill_problems(self) -> list[str]:
        problems = []
        if self.distill_views < 1:
            problems.append(f"distill_views must be at least 1, got {self.distill_views}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            problems.append(f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if not self.distill_temperature > 0:
            problems.append(f"distill_temperature must be positive, got {self.distill_temperature}")
        if self.distill is not None and self.mix_prob > 0:
            problems.append("distillation caches the teacher's outputs for unmixed views; set --mix-prob 0 with "
                            "--distill")
        if self.distill is not None and self.image_size != 32:
            problems.append("distillation's teachers take 32-pixel images; drop --image-size with --distill")
        if self.distill is not None and self.degrade:
            problems.append("distillation caches its teacher's outputs for undegraded views; drop --degrade with "
                            "--distill")
        if self.distill is not None and self.resolutions:
            problems.append("distillation trains at full size; drop --resolutions with --distill")
        return problems

@dataclass(frozen=True)
class ComputeConfig:
    """How a training run computes: where augmentation runs, the precision, compilation, memory layout and
    workers. Meant to change the speed, not what a run learns (docs/performance.md measures how far that
    holds); the defaults are the fast path (:data:`REFERENCE_COMPUTE` lists the switches back to the
    reference one)."""

    augment_backend: str = "batched"
    """Where per-image augmentation runs: ``batched`` (whole uint8 batches on the training device, drawing
    from the same distributions) or ``torchvision`` (per-image PIL transforms in DataLoader workers, the
    reference)."""
    augment_chunk: int | None = None
    """Batches the ``batched`` backend augments in one pass, each with its own draws, so the images are the same
    whatever the chunk; it saves launches where they cost more than the work (GPUs at batch 128). None
    chooses 16 on CUDA GPUs and 1 elsewhere."""
    precision: str = "auto"
    """Autocast precision: ``fp32`` (off), ``bf16``, ``fp16`` (with a gradient scaler) or ``auto`` (bf16
    where the device computes it natively, fp16 on CUDA GPUs without bf16, fp32 otherwise)."""
    fused_bn: bool = False
    """Train Ghost blocks with the fused double BatchNorm: the same function with one set of batch statistics
    per pair of BatchNorms. Measured slower than PyTorch's native BatchNorm kernels on the CPU
    (docs/performance.md), so off in every recipe; kept as the measured alternative (``model/fused_bn.py``)."""
    channels_last: bool = False
    """Use the channels-last memory format (faster convolutions on recent hardware)."""
    compile: bool | str = True
    """Wrap the model (and the batched colour operations) in ``torch.compile``; needs a C++ compiler on
    the CPU, Triton on CUDA GPUs (``--no-compile`` without them). ``auto``: on a GPU, compile; on a CPU, time
    the first steps of each image size eagerly and compile the model only where the steps left save more
    time than compiling costs (as measured on this machine before, or estimated), saying why."""
    compile_mode: str = "auto"
    """``torch.compile`` mode of the model: ``default``, ``reduce-overhead`` (CUDA graphs: each step's kernels
    replayed by one launch, for GPUs where launching the kernels of a small model costs more than running
    them), ``max-autotune``, ``max-autotune-no-cudagraphs``, or ``auto``: ``reduce-overhead`` for one process on
    a CUDA GPU (2.2x the training throughput of ``default`` on an H100, docs/gpu.md), ``default`` otherwise (CUDA
    graphs do not run on CPUs, and beside DistributedDataParallel they have not been tried here). Changes
    speed, not what a run learns."""
    step_graph: str = "model"
    """How much of a training step is compiled as one graph: ``model`` (the model's forward and backward; the
    mixing, the loss and the optimizer run eagerly around it), ``loss`` (the mixing and the loss compiled with the
    model: one graph from the augmented batch to the loss, forward and backward) or ``whole`` (the same, plus the
    backward and the AdamW update, captured on a CUDA GPU as one CUDA graph replayed once per step; elsewhere the
    same operations run uncaptured). The images and the arithmetic are the recipe's either way, within rounding
    (``train/step_graph.py``; tests/train/test_step_graph.py)."""
    depthwise: str = "conv"
    """How the Ghost modules' cheap depthwise convolutions compute: ``conv`` (the framework's convolution, cuDNN's
    on a GPU) or ``shifts`` (a sum of shifted copies of the input times per-channel weights, in fp32, which
    torch.compile fuses with the BatchNorm around it into a few kernels, forward and backward). Same weights and
    function within fp32 rounding (``model/depthwise.py``)."""
    sync_bn: bool = False
    """With several processes, compute BatchNorm statistics over the global batch (SyncBatchNorm)
    instead of each process's share."""
    num_workers: int | None = None
    """DataLoader worker processes of the ``torchvision`` backend (0 loads in the training process); None
    chooses 2 there and 0 with ``batched``, which needs no loader: the whole uint8 training set is held on
    the training device and each batch is gathered there."""

    def __post_init__(self) -> None:
        _raise_if_mistyped(self)
        self._resolve_workers()
        _raise_if(self.compute_problems())

    def _resolve_workers(self) -> None:
        if self.num_workers is None:
            # Frozen: resolved once here, so the saved config records the number used.
            object.__setattr__(self, "num_workers", 0 if self.augment_backend == "batched" else 2)

    def compute_problems(self) -> list[str]:
        """What is wrong with the compute fields (empty when nothing is)."""
        problems = _unknown("augment_backend", "compile_mode", "precision", "step_graph", "depthwise", of=self)
        if self.compile not in (True, False, "auto") or isinstance(self.compile, (int, float)) and not isinstance(
                self.compile, bool):
            problems.append(f"compile must be true, false or 'auto', got {self.compile!r}")
        if self.augment_chunk is not None and self.augment_chunk < 1:
            problems.append(f"augment_chunk must be at least 1 (or unset: chosen by device), got {self.augment_chunk}")
        if self.num_workers < 0:
            problems.append(f"num_workers must not be negative, got {self.num_workers}")
        return problems


RECIPE_FIELDS = tuple(f.name for f in fields(RecipeConfig))
COMPUTE_FIELDS = tuple(f.name for f in fields(ComputeConfig))


@dataclass(frozen=True)
class TrainConfig(ComputeConfig, RecipeConfig):
    """Everything that determines a training run: its :class:`RecipeConfig` fields (what it learns) and its
    :class:`ComputeConfig` fields (how it computes), read as attributes of one frozen object."""

    def __post_init__(self) -> None:
        _raise_if_mistyped(self)
        self._resolve_workers()
        both = ["distillation augments cached views on the training device; use --augment-backend batched with "
                "--distill"] if self.distill is not None and self.augment_backend != "batched" else []
        if self.degrade and self.augment_backend != "batched":
            both.append("--degrade runs in the batched augmentation; use --augment-backend batched with it")
        both += self._step_graph_problems()
        _raise_if(self.recipe_problems() + self.compute_problems() + both)

    def _step_graph_problems(self) -> list[str]:
        """What a compiled step (``step_graph`` other than ``model``) cannot hold: the parts of a run that change
        the step's shape or its graph between steps."""
        if self.step_graph == "model":
            return []
        held = [flag for flag, on in (("--distill", self.distill is not None),
                                      ("--resolutions", bool(self.resolutions)),
                                      ("--freeze-epochs", bool(self.freeze_epochs)),
                                      ("--precision fp16", self.precision == "fp16"),
                                      ("--compile auto", self.compile == "auto")) if on]
        if self.step_graph == "whole" and self.optimizer != "adamw":
            held.append(f"--optimizer {self.optimizer}")
        return [f"--step-graph {self.step_graph} compiles one fixed step; drop {', '.join(held)} or use --step-graph "
                "model"] if held else []

    def for_data(self, classes: tuple[str, ...],
                 normalization: tuple[tuple[float, ...], tuple[float, ...]] | None) -> TrainConfig:
        """This config with its data's class list and normalisation (None: CIFAR-10's). CIFAR-10 keeps the config
        as it is, so a CIFAR-10 run's config is what it always was."""
        if self.dataset == "cifar10":
            return self
        mean, std = normalization or (MEAN, STD)
        return dataclasses.replace(self, classes=tuple(classes), num_classes=len(classes), mean=tuple(mean),
                                   std=tuple(std))

    def for_splits(self, splits: Splits) -> TrainConfig:
        """This config with the class list of the data ``splits`` and the normalisation its ``normalize`` asks
        for (:meth:`for_data`)."""
        return self.for_data(splits.classes, normalization_of(self.dataset, splits.train, self.normalize))

    @classmethod
    def of(cls, recipe: RecipeConfig, compute: ComputeConfig) -> TrainConfig:
        """The config of ``recipe`` computed as ``compute`` says."""
        return cls(**dataclasses.asdict(recipe), **dataclasses.asdict(compute))

    def recipe_config(self) -> RecipeConfig:
        """What this run learns."""
        return RecipeConfig(**{name: getattr(self, name) for name in RECIPE_FIELDS})

    def compute_config(self) -> ComputeConfig:
        """How this run computes."""
        return ComputeConfig(**{name: getattr(self, name) for name in COMPUTE_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (also what checkpoints store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error (a config of another version)."""
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a JSON object of settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown fields {unknown}; was it written by another version of ghostmixnet?")
        # JSON gives lists; the config's sequences are tuples, so that it stays hashable and compares equal.
        lists = {k: tuple(v) for k, v in data.items() if k in ("classes", "mean", "std") and isinstance(v, list)}
        return cls(**{**data, **lists})

    def save(self, path: Path) -> None:
        """Write as indented JSON, atomically."""
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def config_of(ckpt: dict[str, Any], path: Path | str = "checkpoint") -> TrainConfig:
    """The :class:`TrainConfig` stored in a checkpoint; a :class:`CheckpointError` when it is not a valid one."""
    try:
        return TrainConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config is invalid: {e}") from None


def field_docs() -> dict[str, str]:
    """Each :class:`TrainConfig` field's docstring (the string literal under it), for ``--help``."""
    docs = {}
    for part in (RecipeConfig, ComputeConfig):
        body = ast.parse(textwrap.dedent(inspect.getsource(part))).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
