import pytest
from conftest import load_benchmark

from ghostmixnet.data.resolution import ResolutionSchedule

train_throughput = load_benchmark("train_throughput")


def test_the_schedule_shares_add_up_to_the_run():
    shares = train_throughput.schedule_shares(ResolutionSchedule.parse("16:0.3,24:0.6"))
    assert shares == pytest.approx({16: 0.3, 24: 0.3, 32: 0.4})


def test_each_size_of_the_schedule_is_timed_and_weighted_by_its_steps(cifar_dir, capsys):
    train_throughput.main(["--data-dir", str(cifar_dir), "--steps", "1", "--warmup", "1", "--batch-size", "8",
                           "--recipe", "fast", "--no-reference", "--no-compile", "--resolutions", "16:0.5"])
    out = capsys.readouterr().out
    rates = {}
    for line in out.splitlines():
        if line.startswith("fast (") and " at " in line:
            size = int(line.split(" at ")[1].split("x")[0])
            rates[size] = float(line.split(": ")[1].split(" images/s")[0])
    assert set(rates) == {16, 32}
    mean = float(out.split("over its resolution schedule 16:0.5: ")[1].split(" images/s")[0])
    assert mean == pytest.approx(1 / (0.5 / rates[16] + 0.5 / rates[32]), rel=0.01)
