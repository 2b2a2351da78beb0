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
from .factory import ghostmixnet
from .weights import shipped_weights


def _weights_file() -> str | None:
    try:
        return str(shipped_weights("ghostmixnet"))
    except WeightsError:
        return None


default_cfgs = generate_default_cfgs({
    "ghostmixnet_cifar10": {
        "file": _weights_file(), "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (2, 2),
        "crop_pct": 1.0, "interpolation": "bilinear", "mean": MEAN, "std": STD, "first_conv": "stem.0",
        "classifier": CLASSIFIER, "license": "see the ghostmixnet package",
        "description": "GhostMixNet (3.04M parameters) trained on CIFAR-10 at 32x32, shipped with ghostmixnet",
    },
})


@register_model
def ghostmixnet_cifar10(pretrained: bool = False, num_classes: int = 10, drop_rate: float = 0.2,
                        **kwargs: Any) -> CifarNet:
    """GhostMixNet for 32x32 images; ``pretrained`` loads the weights shipped with ghostmixnet (another
    ``num_classes`` keeps every layer but a new classifier)."""
    cfg = kwargs.pop("pretrained_cfg", None)
    for unused in ("pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(unused, None)
    if kwargs:
        raise TypeError(f"ghostmixnet_cifar10 takes no {sorted(kwargs)}")
    model = ghostmixnet(pretrained=pretrained, num_classes=num_classes, dropout=drop_rate)
    pretrained_cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(default_cfgs["ghostmixnet_cifar10"]
                                                                         .default.to_dict())
    model.pretrained_cfg = model.default_cfg = {**pretrained_cfg, "num_classes": num_classes}
    return model
