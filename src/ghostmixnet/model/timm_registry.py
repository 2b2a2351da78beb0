"""GhostMixNet in timm's model registry: ``timm.create_model("ghostmixnet_cifar10", pretrained=True)``.

Imported by the package when timm is installed (timm stays optional). The registered function calls the
package's own entry point (:func:`~ghostmixnet.model.factory.ghostmixnet`), which loads the shipped,
hash-checked weights, and adds the ``pretrained_cfg`` that tells timm's data helpers the input size and
normalisation the weights were trained with.
"""

from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model

from ..data.cifar import MEAN, STD
from ..errors import WeightsError
from .architectures import CLASSIFIER, CifarNet
from .factory import ENTRY_POINTS, WEIGHT_VARIANTS
from .weights import shipped_weights

MODELS = {"ghostmixnet": "GhostMixNet (3.04M parameters)",
          "ghostmixnet-ic01": "GhostMixNet-IC01 (56.5K parameters, for MLPerf Tiny's IC01 budget)",
          "ghostmixnet-ic02": "GhostMixNet-IC02 (413K parameters, for MLPerf Tiny's IC02 budget)",
          "ghostmixnet-robust": "GhostMixNet (3.04M parameters) fine-tuned for JPEG, noise, blur and low contrast"}
"""The family's models in timm, by their ghostmixnet names (timm's: ``NAME_cifar10`` with underscores)."""


def timm_name(model: str) -> str:
    return f"{model.replace('-', '_')}_cifar10"


def _weights_file(model: str) -> str | None:
    try:
        return str(shipped_weights(model))
    except WeightsError:
        return None


default_cfgs = generate_default_cfgs({
    timm_name(model): {
        "file": _weights_file(model), "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (2, 2),
        "crop_pct": 1.0, "interpolation": "bilinear", "mean": MEAN, "std": STD, "first_conv": "stem.0",
        "classifier": CLASSIFIER, "license": "see the ghostmixnet package",
        "description": f"{what} trained on CIFAR-10 at 32x32, shipped with ghostmixnet",
    } for model, what in MODELS.items()
})


def _create(model: str, pretrained: bool, num_classes: int, drop_rate: float, kwargs: dict[str, Any]) -> CifarNet:
    cfg = kwargs.pop("pretrained_cfg", None)
    for unused in ("pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(unused, None)
    if kwargs:
        raise TypeError(f"{timm_name(model)} takes no {sorted(kwargs)}")
    net = {**ENTRY_POINTS, **WEIGHT_VARIANTS}[model](pretrained=pretrained, num_classes=num_classes, dropout=drop_rate)
    pretrained_cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(default_cfgs[timm_name(model)]
                                                                         .default.to_dict())
    net.pretrained_cfg = net.default_cfg = {**pretrained_cfg, "num_classes": num_classes}
    return net


@register_model
def ghostmixnet_cifar10(pretrained: bool = False, num_classes: int = 10, drop_rate: float = 0.2,
                        **kwargs: Any) -> CifarNet:
    """GhostMixNet for 32x32 images; ``pretrained`` loads the weights shipped with ghostmixnet (another
    ``num_classes`` keeps every layer but a new classifier)."""
    return _create("ghostmixnet", pretrained, num_classes, drop_rate, kwargs)


@register_model
def ghostmixnet_ic01_cifar10(pretrained: bool = False, num_classes: int = 10, drop_rate: float = 0.2,
                             **kwargs: Any) -> CifarNet:
    """GhostMixNet-IC01, the member sized for MLPerf Tiny's IC01 microcontroller budget, as above."""
    return _create("ghostmixnet-ic01", pretrained, num_classes, drop_rate, kwargs)


@register_model
def ghostmixnet_ic02_cifar10(pretrained: bool = False, num_classes: int = 10, drop_rate: float = 0.2,
                             **kwargs: Any) -> CifarNet:
    """GhostMixNet-IC02, the member sized for MLPerf Tiny's IC02 budget, as above."""
    return _create("ghostmixnet-ic02", pretrained, num_classes, drop_rate, kwargs)


@register_model
def ghostmixnet_robust_cifar10(pretrained: bool = False, num_classes: int = 10, drop_rate: float = 0.2,
                               **kwargs: Any) -> CifarNet:
    """GhostMixNet with the robust recipe's weights (JPEG, noise, blur, low contrast), as above."""
    return _create("ghostmixnet-robust", pretrained, num_classes, drop_rate, kwargs)
