import torch


def test_compile_mode_auto_uses_cuda_graphs_for_one_process_on_a_gpu():
    from ghostmixnet.train.compile import resolve_compile_mode

    assert resolve_compile_mode("auto", torch.device("cuda")) == "reduce-overhead"
    assert resolve_compile_mode("auto", torch.device("cuda"), distributed=True) == "default"
    assert resolve_compile_mode("auto", torch.device("cpu")) == "default"
    assert resolve_compile_mode("max-autotune", torch.device("cpu")) == "max-autotune"


def test_compiled_ghost_module_has_finite_bf16_gradients_on_the_cpu():
    # torch.compile's 512-bit CPU kernels gave this module non-finite gradients under bf16 autocast (a NaN
    # loss from the second training step); compile_model holds the generated code to 256-bit vectors.
    from ghostmixnet.model.layers import GhostModule
    from ghostmixnet.train.compile import compile_model

    torch._dynamo.reset()
    torch.manual_seed(0)
    module = GhostModule(64, 64, relu=True)
    x = torch.randn(16, 64, 8, 8, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        out = compile_model(module, "default", torch.device("cpu"))(x)
    out.float().square().mean().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_a_cpu_compile_prints_no_warning_from_inside_torch():
    # torch's C++-extension module warns, as a CPU compile first imports it, that no CUDA runtime was found.
    import subprocess
    import sys

    import pytest

    plain = subprocess.run([sys.executable, "-c", "import torch.utils.cpp_extension"], capture_output=True, text=True)
    if "No CUDA runtime is found" not in plain.stderr:
        pytest.skip("torch finds a CUDA runtime here, so it has nothing to warn about")
    # compile_model's CPU path, then the import a first CPU compile makes (torch.compile itself is lazy).
    script = ("import torch; from ghostmixnet.train.compile import compile_model; "
              "compile_model(torch.nn.Linear(4, 2), 'default', torch.device('cpu')); "
              "import torch.utils.cpp_extension; print('imported')")
    compiled = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0 and compiled.stdout.strip() == "imported", compiled.stderr[-800:]
    assert "CUDA_HOME" not in compiled.stderr and "Warning" not in compiled.stderr, compiled.stderr[-800:]
