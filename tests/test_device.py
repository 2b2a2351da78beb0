import pytest
import torch

from ghostmixnet.device import native_cpu_support, resolve_device, resolve_precision


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_cpu_support("bf16") else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_int8_dot_product_is_read_from_the_cpu_flags():
    from ghostmixnet.device import int8_dot_product

    assert int8_dot_product("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n") is False  # AVX2 without VNNI
    assert int8_dot_product("flags\t\t: avx2 avx512f avx512_vnni\n") is True
    assert int8_dot_product("Features\t: fp asimd asimddp\n") is True  # Arm's dot product
    assert int8_dot_product("model name\t: something\n") is None  # no flags line: unknown
