"""Models: the layers, the architectures table and its builder, cost, model files (checkpoints and safetensors
weights), the shipped weights and the factory of entry points that loads them."""

from .architectures import ARCHITECTURES, IMAGE_SIZE, CifarNet, count_parameters
from .factory import ENTRY_POINTS, build_model, ghostmixnet, load_pretrained, resnet, resnet_se

__all__ = ["ARCHITECTURES", "ENTRY_POINTS", "IMAGE_SIZE", "CifarNet", "build_model", "count_parameters", "ghostmixnet",
           "load_pretrained", "resnet", "resnet_se"]
