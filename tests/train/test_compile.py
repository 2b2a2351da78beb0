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
