"""The models by name, with or without trained weights: the one definition of the package's entry points,
which ``ghostmixnet``, ``hubconf.py`` and the timm registration all call.

As timm's ``create_model`` sits above its model files, this factory sits above the architectures (which
know nothing of weights) and the model files (:mod:`~ghostmixnet.model.checkpoint`,
:mod:`~ghostmixnet.model.weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from ..data.cifar import CLASSES
from ..errors import WeightsError
from .architectures import CLASSIFIER, CifarNet, build_architecture
from .checkpoint import ModelSpec, load_checkpoint, load_weights, resolve_checkpoint
from .weights import shipped_weights


def build_model(name: str, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
                pretrained: bool = False, image_size: int = 32) -> CifarNet:
    """Build a registered model by name; raises ValueError naming the known models otherwise.

    ``pretrained`` loads the weights shipped with the package (hash-checked, :mod:`~ghostmixnet.model.weights`),
    trained on CIFAR-10; with another ``num_classes`` every layer but the new classifier starts from them
    (fine-tuning). ``image_size`` is the side of the images it takes (the weights load at any size).
    """
    model = build_architecture(name, num_classes=num_classes, width=width, dropout=dropout, image_size=image_size)
    if pretrained:
        load_pretrained(model, name)
    return model


def load_pretrained(model: nn.Module, name: str = "ghostmixnet", path: Path | str | None = None,
                    echo: Callable[[str], None] | None = None, classes: Sequence[str] | None = None) -> nn.Module:
    """Load trained weights into ``model``, in place, and return it: those shipped for ``name``, or ``path``
    (a weights file, a checkpoint, a run folder, or the word ``pretrained``).

    The architecture and width must match the weights'. A model with another number of classes keeps its
    own, freshly initialised classifier (``fc``) and takes every other layer: the start of a fine-tuning. So
    does a model of other ``classes`` (names in order) than the weights were trained for, even as many: ten
    digits are not CIFAR-10's ten classes. ``echo`` is told in one line which it was.
    """
    path = shipped_weights(name) if path is None else resolve_checkpoint(Path(path))
    ckpt = load_checkpoint(path)
    spec = ModelSpec.of(ckpt, path)
    if spec.model != name:
        raise WeightsError(f"{path} holds weights of {spec.model!r}, not {name!r}")
    state, own, head = ckpt["model"], model.state_dict(), f"{CLASSIFIER}."
    width = own[f"{head}weight"].shape[0]
    trained_for = trained_classes(ckpt["config"])
    new_head = width != spec.num_classes or (
        classes is not None and trained_for is not None and tuple(classes) != trained_for)
    if new_head:
        state = {**{k: v for k, v in state.items() if not k.startswith(head)},
                 **{k: v for k, v in own.items() if k.startswith(head)}}
    load_weights(model, state, path)
    if echo is not None:
        echo(f"fine-tuning: every layer but the classifier starts from {path.name} ({spec.num_classes} classes); "
             f"the classifier is new, for {width} classes" if new_head else
             f"starting from {path.name}, every layer including its {spec.num_classes}-class classifier")
    return model


def trained_classes(config: dict) -> tuple[str, ...] | None:
    """The class names a checkpoint's config says its model was trained for (CIFAR-10's for a 10-class config
    without names, as every config before class lists was); None when it does not say."""
    if isinstance(config.get("classes"), (list, tuple)):
        return tuple(config["classes"])
    return CLASSES if config.get("num_classes", len(CLASSES)) == len(CLASSES) else None


# The public entry points: one function per model, the same arguments everywhere (torch.hub lists these).
# ``image_size`` builds the model for other square images; the weights load at any size (architectures.py).

def ghostmixnet(pretrained: bool = False, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
                image_size: int = 32) -> CifarNet:
    """The paper's model: 3,041,466 parameters at width 1; ``pretrained`` loads the shipped CIFAR-10 weights
    (another ``num_classes`` keeps every layer but a new classifier)."""
    return build_model("ghostmixnet", num_classes, width, dropout, pretrained, image_size)


def resnet(pretrained: bool = False, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
           image_size: int = 32) -> CifarNet:
    """The ablation baseline: 4,630,858 parameters at width 1 (no shipped weights)."""
    return build_model("resnet", num_classes, width, dropout, pretrained, image_size)


def resnet_se(pretrained: bool = False, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
              image_size: int = 32) -> CifarNet:
    """The ablation baseline with SE: 4,907,498 parameters at width 1 (no shipped weights)."""
    return build_model("resnet-se", num_classes, width, dropout, pretrained, image_size)


def ghostmixnet_ic01(pretrained: bool = False, num_classes: int = 10, width: float = 1.0,
                     dropout: float = 0.2, image_size: int = 32) -> CifarNet:
    """The member sized for MLPerf Tiny's IC01 budget (80K parameters, 12.5M MACs, 100 KB int8, 64 KB arena):
    56,542 parameters and 9.38M MACs at width 1."""
    return build_model("ghostmixnet-ic01", num_classes, width, dropout, pretrained, image_size)


def ghostmixnet_ic02(pretrained: bool = False, num_classes: int = 10, width: float = 1.0,
                     dropout: float = 0.2, image_size: int = 32) -> CifarNet:
    """The member sized for MLPerf Tiny's IC02 budget (480K parameters, 76.5M MACs, 512 KB int8, 160 KB arena):
    412,962 parameters and 64.47M MACs at width 1 (no shipped weights yet)."""
    return build_model("ghostmixnet-ic02", num_classes, width, dropout, pretrained, image_size)


def ghostmixnet_robust(pretrained: bool = False, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
                       image_size: int = 32) -> CifarNet:
    """The paper's model with the shipped weights fine-tuned for the photos people take (the ``robust`` recipe:
    JPEG, noise, blur and low contrast; MODEL_CARD.md has their corruption and out-of-distribution figures);
    ``pretrained`` loads those weights, as ``pretrained:ghostmixnet-robust`` names them on the command line."""
    model = build_architecture("ghostmixnet", num_classes=num_classes, width=width, dropout=dropout,
                               image_size=image_size)
    if pretrained:
        load_pretrained(model, "ghostmixnet", shipped_weights(ROBUST))
    return model


ROBUST = "ghostmixnet-robust"
"""The robust weights' name: their file is ``ghostmixnet_robust_cifar10-HASH8.safetensors``."""
WEIGHT_VARIANTS: dict[str, Callable[..., CifarNet]] = {ROBUST: ghostmixnet_robust}
"""Other shipped weights of a registered architecture, by name, with their entry points."""

ENTRY_POINTS: dict[str, Callable[..., CifarNet]] = {"ghostmixnet": ghostmixnet, "ghostmixnet-ic01": ghostmixnet_ic01,
                                                     "ghostmixnet-ic02": ghostmixnet_ic02, "resnet": resnet,
                                                     "resnet-se": resnet_se}
"""Each registered architecture's entry point, by its name."""
