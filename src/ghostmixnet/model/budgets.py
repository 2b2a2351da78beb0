"""The budgets of the devices the family's small members are sized for, and a model's figures held against them.

MLPerf Tiny, the field's benchmark for microcontrollers, scores CIFAR-10 image classification under two budgets:
IC01 (its ResNet-8: 77.7K parameters, 12.5M multiply-accumulates, a 96 KB int8 file, 48 KiB of TFLite Micro
arena) and IC02 (new in v1.4: 480K parameters, 76.5M multiply-accumulates, 512 KB, about 120 KiB). Each budget
here rounds its reference up a little, the int8 file and the arena in decimal kilobytes (the stricter reading).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """What a device class gives one model."""

    name: str
    """Short name, as ``info`` prints it."""
    parameters: int
    """Most trainable parameters."""
    macs: int
    """Most multiply-accumulates per 32x32 image."""
    int8_bytes: int
    """Largest int8 model file (it lives in flash)."""
    arena_bytes: int
    """Most working memory for activations at batch 1 (it lives in SRAM)."""
    reference: str
    """What the budget is taken from."""
    devices: str
    """Devices it fits."""


BUDGETS: dict[str, Budget] = {
    "ic01": Budget("IC01", 80_000, 12_500_000, 100_000, 64_000,
                   "MLPerf Tiny IC01, ResNet-8: 77.7K parameters, 12.5M MACs, 96 KB int8, 48 KiB arena, 87.07% int8",
                   "nRF52840 (256 KB SRAM, 1 MB flash), STM32F746 (320 KB, 1 MB), STM32H7A3 (1.4 MB, 2 MB)"),
    "ic02": Budget("IC02", 480_000, 76_500_000, 512_000, 160_000,
                   "MLPerf Tiny IC02 (v1.4): 480K parameters, 76.5M MACs, 512 KB int8, about 120 KiB arena, 91.21% "
                   "int8",
                   "STM32F746 (320 KB SRAM, 1 MB flash), STM32H7A3 (1.4 MB, 2 MB)"),
}


@dataclass(frozen=True)
class Fit:
    """One figure of a model against one budget."""

    figure: str
    value: int
    limit: int
    measured: bool
    """False where ``value`` is an estimate (``info`` without a converted file)."""

    @property
    def fits(self) -> bool:
        return self.value <= self.limit


def fits(budget: Budget, parameters: int, macs: int, int8_bytes: int, arena_bytes: int,
         measured: bool = False) -> list[Fit]:
    """``budget``'s four figures against a model's (the int8 file and the arena measured, or estimated)."""
    return [Fit("parameters", parameters, budget.parameters, True), Fit("MACs", macs, budget.macs, True),
            Fit("int8 file bytes", int8_bytes, budget.int8_bytes, measured),
            Fit("arena bytes", arena_bytes, budget.arena_bytes, measured)]


def budget_lines(parameters: int, macs: int, int8_bytes: int, arena_bytes: int, measured: bool = False) -> list[str]:
    """One line per budget: whether the model fits it. Parameters and MACs are counted, so they decide; the int8
    file and the arena decide too when ``measured`` (in the microcontroller runtime), and are otherwise shown as
    the estimates they are."""
    lines = []
    for budget in BUDGETS.values():
        checked = fits(budget, parameters, macs, int8_bytes, arena_bytes, measured)
        over = [f"{f.figure} {f.value:,} > {f.limit:,}" for f in checked if f.measured and not f.fits]
        head = (f"{budget.name} budget ({budget.parameters:,} parameters, {budget.macs / 1e6:.1f}M MACs, "
                f"{budget.int8_bytes // 1000} KB int8, {budget.arena_bytes // 1000} KB arena): ")
        if over:
            lines.append(head + "over: " + "; ".join(over))
        elif measured:
            lines.append(head + "fits")
        else:
            lines.append(head + f"fits its parameters and MACs; estimated int8 file {int8_bytes / 1000:.0f} KB, "
                         f"arena {arena_bytes / 1000:.0f} KB")
    return lines
