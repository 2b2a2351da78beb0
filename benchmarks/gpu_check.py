"""One prepared check of the training and inference paths on one GPU, within a hard wall-clock budget.

In order, each section recorded as it finishes (a failing section records its error and the check goes on):

1. environment: GPU, memory, driver, CUDA, cuDNN, torch, Triton;
2. training throughput of the ``paper`` recipe (images/s): the reference path (per-image PIL transforms in
   DataLoader workers, fp32, eager), the default path, and any ``--variant`` of the compute switches;
3. where a step's time goes (data, augmentation, mixing + forward + backward, optimizer), host and device;
4. inference: batch-1 latency and large-batch throughput, eager and compiled, fp32 and bf16;
5. ``torchrun --nproc-per-node 1`` (NCCL on a GPU, gloo on the CPU) training a few steps;
6. as many epochs of the ``paper`` recipe (200-epoch schedule, 5,000-image validation split) as the rest
   of the budget allows, on the fastest measured path, with validation and test accuracy after each
   epoch beside the authors' published curve, and the projected time of all 200 epochs.

It writes ``report.json`` and ``report.md`` to ``--out`` after every section and prints the headline last:
``paper_train_images_per_s: VALUE`` (the default path's throughput). On a GPU:

    python benchmarks/gpu_check.py --data-dir DATA --out gpu-report

and on the CPU, as the tests run it (seconds): ``--device cpu --budget 1 --width 0.125 --train-subset 512``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ghostmixnet import __version__
from ghostmixnet.config import PAPER_TEST_CURVE, REFERENCE_COMPUTE, TrainConfig, make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.deploy.bench import time_calls
from ghostmixnet.device import autocast, resolve_device
from ghostmixnet.files import write_text_atomic
from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.model.factory import build_model
from ghostmixnet.train.run import train
from ghostmixnet.train.throughput import synchronize, training_throughput

# The authors' run, test accuracy (%) after these epochs (reference-recipe.md; selected on that test set).
PUBLISHED_CURVE = PAPER_TEST_CURVE
# The switches a variant may change: how a run computes, never what it learns.
COMPUTE_FIELDS = set(REFERENCE_COMPUTE) | {"compile_mode", "augment_chunk", "step_graph", "depthwise"}
HEADLINE = "paper_train_images_per_s"


class Budget:
    """The wall clock of the whole check."""

    def __init__(self, minutes: float) -> None:
        self.total, self.start = 60 * minutes, time.perf_counter()

    def left(self) -> float:
        """Seconds left."""
        return self.total - (time.perf_counter() - self.start)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:field=value,field=value`` (compute switches only) into a name and config overrides."""
    name, _, body = text.partition(":")
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    overrides: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in COMPUTE_FIELDS:
            raise SystemExit(f"--variant {text!r}: {key!r} is not a compute switch; use one of "
                             f"{', '.join(sorted(COMPUTE_FIELDS))}")
        kind = str(types[key])
        overrides[key] = (value.lower() in ("1", "true", "yes") if "bool" in kind
                          else int(value) if "int" in kind else value)
    if not name or not overrides:
        raise SystemExit(f"--variant {text!r}: expected NAME:field=value[,field=value...]")
    return name, overrides


def reset_compiled() -> None:
    """Forget what torch.compile compiled so far: each configuration gets a fresh budget of recompilations
    (the check builds many models in one process; past dynamo's recompile limit a model runs eagerly)."""
    torch._dynamo.reset()


def environment(device: torch.device) -> dict[str, Any]:
    """What ran the check."""
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": str(device),
        "ghostmixnet": __version__, "commit": os.environ.get("GHOSTMIXNET_COMMIT") or _git_commit(),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "machine": platform.machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), driver=_driver_version())
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    else:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def throughput_section(args: argparse.Namespace, device: torch.device, data: Any,
                       variants: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Images/s of the reference path, the default path (with its phase breakdown) and each variant."""
    common = {"width": args.width, "batch_size": args.batch_size}
    configs = [("reference", make_config("paper", **common, **REFERENCE_COMPUTE | {"num_workers": args.workers})),
               ("default", make_config("paper", **common, compile=args.compile))]
    configs += [(name, make_config("paper", **common, **{"compile": args.compile, **overrides}))
                for name, overrides in variants]
    rows: dict[str, Any] = {}
    for name, cfg in configs:
        reset_compiled()
        reference = name == "reference"
        steps, warmup = (args.reference_steps, 2) if reference else (args.steps, args.warmup)
        started = time.perf_counter()
        try:
            measured = training_throughput(cfg, data, steps, warmup, device, phase_steps=args.phase_steps)
            rows[name] = {"images_per_s": measured.images_per_s, "warmup_seconds": measured.warmup_seconds,
                          "precision": measured.precision, "phases_ms_per_step": measured.phases,
                          "steps": steps, "switches": {k: getattr(cfg, k) for k in sorted(COMPUTE_FIELDS)}}
        except Exception as e:  # one failing variant must not cost the others
            rows[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)}
        rows[name]["seconds"] = time.perf_counter() - started
        print(f"throughput {name}: " + (f"{rows[name]['images_per_s']:.0f} images/s" if "images_per_s" in rows[name]
                                        else rows[name]["error"]), flush=True)
    if "images_per_s" in rows.get("reference", {}) and "images_per_s" in rows.get("default", {}):
        rows["default_over_reference"] = rows["default"]["images_per_s"] / rows["reference"]["images_per_s"]
    return rows


def inference_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Batch-1 latency (median ms) and large-batch throughput, eager and compiled, fp32 and bf16."""
    rows: dict[str, Any] = {}
    model = build_model("ghostmixnet", 10, args.width, 0.2).to(device).eval()
    small = torch.randn(1, 3, 32, 32, device=device)
    large = torch.randn(args.inference_batch, 3, 32, 32, device=device)
    compiled_mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs: batch 1 is launch-bound
    for compiled in (False, True) if args.compile else (False,):
        runner = torch.compile(model, mode=compiled_mode) if compiled else model
        for precision in ("fp32", "bf16"):
            name = f"{'compiled' if compiled else 'eager'}-{precision}"
            try:
                def call(x: torch.Tensor, runner: Any = runner, precision: str = precision) -> None:
                    with torch.no_grad(), autocast(device, precision):
                        runner(x)
                    synchronize(device)

                started = time.perf_counter()
                latency = time_calls(lambda: call(small), args.latency_repeats, warmup=5)
                batch = time_calls(lambda: call(large), args.batch_repeats, warmup=3)
                rows[name] = {"latency_ms_p50": 1000 * statistics.median(latency),
                              "batch_images_per_s": args.inference_batch / statistics.median(batch),
                              "seconds": time.perf_counter() - started}
            except Exception as e:
                rows[name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"inference {name}: {rows[name]}", flush=True)
    rows["batch_size"] = args.inference_batch
    rows["compile_mode"] = compiled_mode or "default"
    return rows


def torchrun_section(args: argparse.Namespace, device: torch.device, workdir: Path) -> dict[str, Any]:
    """A few training steps under ``torchrun --nproc-per-node 1`` (NCCL on CUDA, gloo on the CPU)."""
    out = workdir / "torchrun-run"
    subset = 4 * args.batch_size
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
               "-m", "ghostmixnet", "train", "--data-dir", str(args.data_dir), "--out", str(out),
               "--recipe", "paper", "--epochs", "1", "--width", str(args.width),
               "--batch-size", str(args.batch_size), "--train-subset", str(subset),
               "--val-size", str(min(500, args.val_size)), "--device", device.type, "--no-compile"]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.torchrun_timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        output = done.stdout + done.stderr
        ok = done.returncode == 0 and (out / "test.json").is_file()
        result: dict[str, Any] = {"ok": ok, "returncode": done.returncode}
    except subprocess.TimeoutExpired as e:
        output, result = str(e.stdout or "") + str(e.stderr or ""), {"ok": False, "returncode": None,
                                                                       "error": "timed out"}
    result.update(backend="nccl" if device.type == "cuda" else "gloo", steps=-(-subset // args.batch_size),
                  seconds=time.perf_counter() - started, command=" ".join(command[2:]),
                  output_tail=output[-3000:])
    if (out / "test.json").is_file():
        result["test_acc"] = json.loads((out / "test.json").read_text())["accuracy"]
    print(f"torchrun: ok={result['ok']} in {result['seconds']:.0f} s", flush=True)
    return result


def epochs_section(args: argparse.Namespace, device: torch.device, budget: Budget, workdir: Path,
                   switches: dict[str, Any], test: Any) -> dict[str, Any]:
    """The paper recipe for as many epochs as the budget leaves, scoring the test set after each. If the
    run fails on the chosen switches, it is tried again on the default path, then without compilation."""
    attempts = [switches] + ([{}] if switches else []) + ([{"compile": False}] if args.compile else [])
    failed: list[dict[str, Any]] = []
    for attempt in attempts:
        try:
            result = _epochs(args, device, budget, workdir / f"paper-run-{len(failed)}", attempt, test)
            return {**result, "switches": attempt, "failed_attempts": failed}
        except Exception as e:
            failed.append({"switches": attempt, "error": f"{type(e).__name__}: {e}",
                           "traceback": traceback.format_exc(limit=8)})
            print(f"epochs on {attempt} failed: {failed[-1]['error']}", flush=True)
            if budget.left() < 60 + args.reserve:
                break
    raise RuntimeError("every attempt failed: " + "; ".join(f"{f['switches']}: {f['error']}" for f in failed))


def _epochs(args: argparse.Namespace, device: torch.device, budget: Budget, run_dir: Path,
            switches: dict[str, Any], test: Any) -> dict[str, Any]:
    cfg = make_config("paper", width=args.width, batch_size=args.batch_size, val_size=args.val_size,
                      train_subset=args.train_subset, **{"compile": args.compile, **switches})
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()

    def after_epoch(row: dict[str, Any], model: torch.nn.Module) -> bool:
        t0 = time.perf_counter()
        scored = evaluate(model, test.images, test.labels, device)  # fp32
        rows.append({"epoch": row["epoch"], "train_loss": row["train_loss"], "val_acc": row["val_acc"],
                     "test_acc": scored.accuracy, "train_seconds": row["seconds"],
                     "images_per_s": row["images_per_s"], "test_seconds": time.perf_counter() - t0,
                     "wall_seconds": time.perf_counter() - started,
                     "published_test_acc": PUBLISHED_CURVE.get(row["epoch"], None)})
        print(f"epoch {row['epoch']}: val {100 * row['val_acc']:.2f}% test {100 * scored.accuracy:.2f}% "
              f"({row['images_per_s']:.0f} images/s)", flush=True)
        # Stop while another epoch like the last one (validation and scoring included) still fits.
        last = rows[-1]["wall_seconds"] - (rows[-2]["wall_seconds"] if len(rows) > 1 else 0.0)
        return len(rows) >= args.max_epochs or budget.left() - args.reserve < last

    # The trainer limits training time (a safety net inside an epoch); after_epoch keeps the wall clock.
    limit = max(budget.left() - args.reserve, 1.0)
    summary = train(cfg, args.data_dir, run_dir, device=str(device), log_every=args.log_every,
                    time_limit=limit, epoch_end=after_epoch)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {"config": cfg.to_dict(), "time_limit_seconds": limit, "epochs": rows,
                              "wall_seconds": wall, "best_val_acc": summary.get("best_val_acc"),
                              "best_epoch": summary.get("best_epoch"), "final_test_acc": summary.get("test_acc")}
    if rows:
        # The first epoch carries compilation: project from the later ones when there are any.
        steady = rows[1:] or rows
        per_epoch = statistics.mean(r["train_seconds"] for r in steady)
        result["train_seconds_per_epoch"] = per_epoch
        result["projected_200_epochs_minutes"] = 200 * per_epoch / 60
        # Wall time per epoch, validation and the test scoring included (between the first and last epoch).
        wall_per_epoch = ((rows[-1]["wall_seconds"] - rows[0]["wall_seconds"]) / (len(rows) - 1) if len(rows) > 1
                          else rows[0]["wall_seconds"])
        result["projected_200_epochs_minutes_with_validation"] = 200 * wall_per_epoch / 60
    return result


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``report.json`` and ``report.md`` (written whole each time, replacing the previous ones)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(out / "report.md", markdown(report))


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables, a section at a time (:data:`SECTION_MARKDOWN`); skipped sections are named,
    failed ones listed with their error."""
    lines = _header_md(report)
    for name, render in SECTION_MARKDOWN.items():
        value = report.get(name)
        if isinstance(value, dict) and value and not {"skipped", "error"} & set(value):
            lines += render(value)
    errors = {k: v["error"] for k, v in report.items() if isinstance(v, dict) and "error" in v}
    if errors:
        lines += ["", "## Sections that failed", ""] + [f"- {k}: {v}" for k, v in errors.items()]
    skipped = [k for k, v in report.items() if isinstance(v, dict) and "skipped" in v]
    if skipped:
        lines += ["", f"Skipped: {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def _header_md(report: dict[str, Any]) -> list[str]:
    env = report.get("environment", {})
    return ["# GhostMixNet GPU check", "",
            f"{env.get('gpu', env.get('device'))}, {env.get('gpu_memory_gib', '?')} GiB; driver "
            f"{env.get('driver')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, torch {env.get('torch')}, "
            f"Triton {env.get('triton')}; {env.get('date')}; commit {env.get('commit')}; "
            f"budget {report.get('budget_minutes')} min", ""]


def _throughput_md(tp: dict[str, Any]) -> list[str]:
    lines = ["## Training throughput, paper recipe", "", "| path | images/s | first steps (s) | precision |",
             "|---|---|---|---|"]
    for name, row in tp.items():
        if isinstance(row, dict):
            lines.append(f"| {name} | {row.get('images_per_s', row.get('error', '')):.0f} | "
                         f"{row.get('warmup_seconds', 0):.1f} | {row.get('precision', '')} |"
                         if "images_per_s" in row else f"| {name} | failed: {row.get('error')} | | |")
    if "default_over_reference" in tp:
        lines.append(f"\ndefault / reference: {tp['default_over_reference']:.2f}x")
    phases = tp.get("default", {}).get("phases_ms_per_step", {})
    if phases:
        lines += ["", "## Where a default-path step's time goes (ms per step)", "",
                  "| phase | host | device |", "|---|---|---|"]
        lines += [f"| {p} | {v['host_ms']:.2f} | {v['device_ms']:.2f} |" for p, v in phases.items()]
    return lines


def _inference_md(inf: dict[str, Any]) -> list[str]:
    lines = ["", f"## Inference (large batch {inf.get('batch_size')}, compiled mode {inf.get('compile_mode')})",
             "", "| path | batch-1 latency (ms, median) | large-batch images/s |", "|---|---|---|"]
    return lines + [f"| {k} | {v['latency_ms_p50']:.3f} | {v['batch_images_per_s']:.0f} |" if "error" not in v
                    else f"| {k} | failed: {v['error'][:80]} | |" for k, v in inf.items() if isinstance(v, dict)]


def _torchrun_md(run: dict[str, Any]) -> list[str]:
    return ["", f"## torchrun --nproc-per-node 1 ({run.get('backend')})", "",
            f"{'passed' if run.get('ok') else 'FAILED'}: {run.get('steps')} steps, one epoch, "
            f"{run.get('seconds', 0):.0f} s"]


def _epochs_md(ep: dict[str, Any]) -> list[str]:
    if not ep.get("epochs"):
        return []
    lines = ["", "## Paper recipe, epoch by epoch", "",
             "| epoch | val acc | test acc | published test acc | train s | images/s |", "|---|---|---|---|---|---|"]
    for r in ep["epochs"]:
        published = f"{r['published_test_acc']:.2f}%" if r.get("published_test_acc") else ""
        lines.append(f"| {r['epoch']} | {100 * r['val_acc']:.2f}% | {100 * r['test_acc']:.2f}% | {published} | "
                     f"{r['train_seconds']:.1f} | {r['images_per_s']:.0f} |")
    if "projected_200_epochs_minutes" in ep:
        lines.append(f"\nprojected 200 epochs: {ep['projected_200_epochs_minutes']:.1f} min of training, "
                     f"{ep['projected_200_epochs_minutes_with_validation']:.1f} min with validation and scoring")
    return lines


# Each section's part of report.md, in the report's order (a section that failed or was skipped has none).
SECTION_MARKDOWN: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "throughput": _throughput_md, "inference": _inference_md, "torchrun": _torchrun_md, "epochs": _epochs_md}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    p.add_argument("--out", type=Path, default=Path("gpu-report"), help="where report.json and report.md go")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu [auto]")
    p.add_argument("--budget", type=float, default=9.0, help="wall-clock minutes for everything [9]")
    p.add_argument("--width", type=float, default=1.0, help="model width (1.0 is the paper's) [1.0]")
    p.add_argument("--batch-size", type=int, default=128, help="[128, the paper's]")
    p.add_argument("--train-subset", type=int, default=None, help="train on this many images (CPU runs)")
    p.add_argument("--val-size", type=int, default=5000, help="validation split [5000]")
    p.add_argument("--steps", type=int, default=60, help="timed steps of each fast path [60]")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps first (compilation) [8]")
    p.add_argument("--reference-steps", type=int, default=15, help="timed steps of the reference path [15]")
    p.add_argument("--phase-steps", type=int, default=20, help="steps timed phase by phase [20]")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference path [2]")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:field=value,...",
                   help="also time the default path with these compute switches, e.g. "
                        "'graphs:compile_mode=reduce-overhead' or 'cl:channels_last=true' (repeatable)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the fast paths (--no-compile: quick CPU runs; no compiled inference) [on]")
    p.add_argument("--epochs-on", choices=["fastest", "default"], default="fastest",
                   help="the path the epochs run on: the fastest measured one or the default [fastest]")
    p.add_argument("--log-every", type=int, default=50,
                   help="the epochs' progress line (and loss read) every N steps, as ghostmixnet train [50]")
    p.add_argument("--max-epochs", type=int, default=200, help="stop the epochs section after this many [200]")
    p.add_argument("--inference-batch", type=int, default=1024, help="large inference batch [1024]")
    p.add_argument("--latency-repeats", type=int, default=100, help="timed batch-1 calls [100]")
    p.add_argument("--batch-repeats", type=int, default=10, help="timed large-batch calls [10]")
    p.add_argument("--torchrun-timeout", type=float, default=180, help="seconds [180]")
    p.add_argument("--reserve", type=float, default=20, help="seconds kept back at the end [20]")
    p.add_argument("--skip", default="", help="comma-separated sections to leave out: throughput, inference, "
                                              "torchrun, epochs")
    return p.parse_args(argv)


def epochs_path(throughput: dict[str, Any], variants: list[tuple[str, dict[str, Any]]],
                epochs_on: str) -> tuple[str, dict[str, Any]]:
    """The path the epochs section runs on (the fastest one measured, or the default) and its compute switches."""
    measured = {k: v for k, v in throughput.items()
                if isinstance(v, dict) and "images_per_s" in v and k != "reference"}
    pick = (max(measured, key=lambda k: measured[k]["images_per_s"]) if epochs_on == "fastest" and measured
            else "default")
    switches = {k: v for k, v in measured.get(pick, {}).get("switches", {}).items()
                if k in dict(variants).get(pick, {})}
    return pick, switches


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    budget = Budget(args.budget)
    device = resolve_device(args.device)
    if device.type == "cuda":  # say why a graph is not replayed as a CUDA graph, if one is not
        torch._logging.set_logs(perf_hints=True)
    skip = set(filter(None, args.skip.split(",")))
    variants = [parse_variant(v) for v in args.variant]
    report: dict[str, Any] = {"budget_minutes": args.budget, "args": vars(args)}
    report["environment"] = environment(device)
    write_report(args.out, report)
    print(json.dumps(report["environment"]), flush=True)

    train_set = load_cifar10(args.data_dir, train=True)
    test_set = load_cifar10(args.data_dir, train=False)

    def section(name: str, run: Any) -> None:
        if name in skip:
            report[name] = {"skipped": "--skip"}
            return
        reset_compiled()
        try:
            report[name] = run()
        except Exception as e:
            report[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
            print(f"{name} failed: {report[name]['error']}", flush=True)
        report[name + "_seconds_left"] = budget.left()
        write_report(args.out, report)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        section("throughput", lambda: throughput_section(args, device, train_set, variants))
        section("inference", lambda: inference_section(args, device))
        section("torchrun", lambda: torchrun_section(args, device, Path(tmp)))
        pick, switches = epochs_path(report.get("throughput", {}), variants, args.epochs_on)
        report["epochs_on"] = {"path": pick, "switches": switches}
        section("epochs", lambda: epochs_section(args, device, budget, Path(tmp), switches, test_set))
    report["total_seconds"] = budget.total - budget.left()
    write_report(args.out, report)
    default = report.get("throughput", {}).get("default", {})
    print(f"report: {args.out / 'report.md'}")
    print(f"{HEADLINE}: {default.get('images_per_s', float('nan')):.1f}")
    return report


if __name__ == "__main__":
    main()
