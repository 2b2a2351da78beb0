"""The members sized for microcontrollers stay within their budgets (counted, not stated), and ``info`` says where
any model stands against each budget."""

import pytest

from ghostmixnet.cli import main
from ghostmixnet.model.architectures import ARCHITECTURES, build_architecture, count_parameters
from ghostmixnet.model.budgets import BUDGETS, budget_lines, fits
from ghostmixnet.model.cost import int8_file_estimate, total_macs

MEMBERS = [name for name, arch in ARCHITECTURES.items() if arch.budget]


def test_there_is_a_member_for_each_budget():
    assert sorted(ARCHITECTURES[name].budget for name in MEMBERS) == sorted(BUDGETS)


@pytest.mark.parametrize("name", MEMBERS)
def test_each_member_is_within_its_budget_counted(name):
    budget = BUDGETS[ARCHITECTURES[name].budget]
    model = build_architecture(name)
    parameters, macs = count_parameters(model), total_macs(model)
    assert 0.5 * budget.parameters < parameters <= budget.parameters  # sized for it, not far below it
    assert 0.5 * budget.macs < macs <= budget.macs
    assert int8_file_estimate(model) <= budget.int8_bytes
    assert ARCHITECTURES[name].block == "ghost" and ARCHITECTURES[name].se_divisor  # the paper's Ghost blocks and SE


def test_info_says_which_budget_a_model_fits_and_which_figures_are_over(capsys):
    assert main(["info", "ghostmixnet-ic01"]) == 0
    out = capsys.readouterr().out
    assert "sized for the IC01 budget" in out
    assert "IC01 budget (80,000 parameters, 12.5M MACs, 100 KB int8, 64 KB arena): fits its parameters and MACs" in out
    assert main(["info", "ghostmixnet"]) == 0
    out = capsys.readouterr().out
    assert "IC01 budget" in out and "over: parameters 3,041,466 > 80,000; MACs 444,256,256 > 12,500,000" in out
    assert "over: parameters 3,041,466 > 480,000" in out and "sized for" not in out
    assert main(["info", "ghostmixnet-ic01", "--width", "2"]) == 0  # twice as wide: over IC01, within IC02
    out = capsys.readouterr().out
    assert "over: parameters" in out.split("IC01 budget (")[1].splitlines()[0]
    assert "fits its parameters and MACs" in out.split("IC02 budget (")[1].splitlines()[0]


def test_measured_figures_decide_and_estimates_do_not():
    ic01 = BUDGETS["ic01"]
    assert all(f.fits for f in fits(ic01, 60_000, 12_000_000, 90_000, 60_000))
    estimated = budget_lines(60_000, 12_000_000, 90_000, 70_000)[0]
    assert "fits its parameters and MACs" in estimated and "arena 70 KB" in estimated
    measured = budget_lines(60_000, 12_000_000, 90_000, 70_000, measured=True)[0]
    assert measured.endswith("over: arena bytes 70,000 > 64,000")
    assert budget_lines(60_000, 12_000_000, 90_000, 60_000, measured=True)[0].endswith(": fits")
