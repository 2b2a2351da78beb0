import torch
from torch import nn

from ghostmixnet.model.factory import build_model


def test_parameter_groups_keep_weight_decay_off_norms_and_biases():
    from ghostmixnet.config import make_config
    from ghostmixnet.train.optim import build_optimizer, parameter_groups

    model = build_model("ghostmixnet", width=0.125)
    decayed, free = parameter_groups(model, 0.05, decay_norm_and_bias=False)
    names = {id(p): n for n, p in model.named_parameters()}
    free_names = {names[id(p)] for p in free["params"]}
    assert free["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.05
    assert "fc.bias" in free_names and "stem.1.weight" in free_names and "stem.1.bias" in free_names
    assert {names[id(p)] for p in decayed["params"]} == {n for n, p in model.named_parameters() if p.ndim > 1}
    assert "fc.weight" in {names[id(p)] for p in decayed["params"]}
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))
    # one group (the paper's AdamW, unchanged) unless asked
    assert len(parameter_groups(model, 0.05)) == 1
    paper = build_optimizer(model, make_config("paper"), torch.device("cpu"))
    assert isinstance(paper, torch.optim.AdamW) and len(paper.param_groups) == 1
    assert paper.param_groups[0]["weight_decay"] == 1e-3 and paper.param_groups[0]["betas"] == (0.9, 0.999)
    sgd = build_optimizer(model, make_config("fast", optimizer="sgd", lr=0.1, decay_norm_and_bias=False),
                          torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    assert sgd.param_groups[1]["weight_decay"] == 0


def test_weight_decay_does_not_move_an_excluded_parameter():
    from ghostmixnet.config import make_config
    from ghostmixnet.train.optim import build_optimizer

    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    optimizer = build_optimizer(model, make_config("fast", lr=0.1, weight_decay=0.5, decay_norm_and_bias=False),
                                torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay could move a parameter
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer.step()
    after = model.state_dict()
    assert not torch.equal(before["0.weight"], after["0.weight"])
    assert all(torch.equal(before[k], after[k]) for k in ("0.bias", "1.weight", "1.bias"))
