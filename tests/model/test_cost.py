import torch

from ghostmixnet.model.architectures import build_architecture
from ghostmixnet.model.cost import describe_model, peak_activation_bytes, stage_costs


def test_peak_activation_memory_is_measured_between_the_largest_tensor_and_all_of_them():
    model = build_architecture("ghostmixnet", width=0.125).eval()
    stem_output = 8 * 32 * 32 * 4  # bytes of the largest single activation: 8 channels at 32x32, fp32
    every_output = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: every_output.append(out.numel() * 4))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    peak = peak_activation_bytes(model)
    assert stem_output * 2 <= peak < sum(every_output)  # a block holds its input and its branch at once
    assert peak_activation_bytes(model, batch=4) == 4 * peak  # every activation scales with the batch
    assert [p.data_ptr() for p in model.parameters()]  # the model is left usable
    assert sum(r.macs for r in stage_costs(model)) > 0


def test_info_reports_the_activation_memory():
    text = describe_model("ghostmixnet", width=0.125)
    line = next(s for s in text.splitlines() if s.startswith("peak activation memory, batch 1:"))
    mb = float(line.split(":")[1].split("MB")[0])
    assert mb == round(peak_activation_bytes(build_architecture("ghostmixnet", width=0.125)) / 1e6, 2)
