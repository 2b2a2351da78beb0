"""A training run from start to finish: data, model, optimizer, the step loop, checkpoints, outputs.

Exact resume at any step rests on one rule: no random generator carries state from one step to the
next. Shuffling is a function of (seed, epoch); each image's augmentation of (seed, epoch, index);
mixing and dropout of (seed, epoch, step, rank). The state of a run between two steps is therefore
the model, optimizer, scheduler, gradient scaler and the position (epoch, step), which every
checkpoint holds; a resumed run replays the remaining steps exactly as an uninterrupted one.

Several processes (``torchrun``) share the one code path: each trains on its shard of every global
batch, DistributedDataParallel averages the gradients, metrics are summed across processes, and
rank 0 alone logs and writes.
"""

from __future__ import annotations

import json
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import __version__
from .augment import train_transform
from .batch_augment import BatchPipeline, augment_in_chunks, resolve_augment_chunk
from .checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, load_weights, save_atomic, unwrap
from .config import TrainConfig
from .data import (
    CLASSES,
    MEAN,
    SEED_BATCH_AUGMENT,
    SEED_STEP,
    STD,
    DeviceBatches,
    ImageDataset,
    ResumableSampler,
    Splits,
    load_splits,
    mix_seed,
)
from .distributed import DistEnv, init_distributed
from .engine import (
    EvalResult,
    Progress,
    build_optimizer,
    compile_model,
    evaluate,
    forward_backward,
    mark_step,
    optimizer_step,
    prepare_device,
    resolve_compile_mode,
    resolve_precision,
    slow_precision_warning,
)
from .mix import BatchMixer
from .models import build_model, count_parameters, set_fused_bn
from .report import plot_curves, write_metrics, write_text_atomic
from .schedule import build_scheduler

LAST, PREVIOUS, BEST = "last.pt", "last.prev.pt", "best.pt"


class RunError(Exception):
    """A run cannot start or continue as asked; the message says why and what to do."""


class NonFiniteLossError(RunError, FloatingPointError):
    """The loss became NaN or infinite; the weights were not updated with it."""


class RunLog:
    """Prints a line and appends it to the run's ``train.log`` (on rank 0; other ranks stay silent)."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None = None) -> None:
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        if self.path is None:
            return
        if self.echo is None:
            print(line, flush=True)  # flushed, so redirected logs of long runs stay current
        else:
            self.echo(line)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def selection_note(splits: Splits) -> str:
    if splits.val_is_test:
        return ("selecting checkpoints on the TEST set (--val-size 0, the paper's habit): "
                "the test accuracy reported is optimistic, not an unbiased estimate")
    return f"selecting checkpoints on a {len(splits.val)}-image validation split of the training set"


def eval_summary(result: EvalResult) -> dict[str, Any]:
    return {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "per_class_accuracy": {c: float(a) for c, a in zip(CLASSES, result.per_class_accuracy)},
        "confusion": result.confusion.tolist(),
    }


def load_resume_checkpoint(out_dir: Path, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """The newest usable training checkpoint of a run: ``last.pt``, or the one before it if ``last.pt``
    is missing, truncated or corrupt (saying so)."""
    out_dir = Path(out_dir)
    errors = []
    for name in (LAST, PREVIOUS):
        path = out_dir / name
        if not path.exists():
            errors.append(f"{path} does not exist")
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if "optimizer" not in ckpt or "epoch" not in ckpt:
            errors.append(f"{path} holds weights only, not the training state a resume needs")
            continue
        if name != LAST:
            log(f"warning: {errors[0]}; resuming from the previous checkpoint {path} instead")
        return ckpt, path
    raise RunError("cannot resume: " + "; ".join(errors))


@contextmanager
def stop_requests() -> Iterator[dict[str, int]]:
    """Turn SIGTERM and SIGINT into a request to stop after the current step (a second SIGINT
    interrupts at once). Yields a dict whose ``signal`` is set to the signal's number when one came."""
    request = {"signal": 0}
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield request
        return

    def handler(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and request["signal"]:
            raise KeyboardInterrupt
        request["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _compile_failure(error: Exception) -> bool:
    """Whether ``error`` came from torch.compile (e.g. no C++ compiler, or no Triton for the GPU)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import InductorError

    return isinstance(error, (TorchDynamoException, InductorError))


def _compile_error(error: Exception) -> RunError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return RunError(f"torch.compile failed ({type(error).__name__}: {first_line[:300]}); train without it: add "
                    "--no-compile (same results, slower)")


def _explain_compile_failures(batches: Iterable[Any], compiled: bool) -> Iterator[Any]:
    """``batches`` as they come; a torch.compile failure while making one (the compiled colour operations)
    becomes the same clear error as one in the model."""
    try:
        yield from batches
    except Exception as e:
        if compiled and _compile_failure(e):
            raise _compile_error(e) from e
        raise


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def train(cfg: TrainConfig, data_dir: Path, out_dir: Path, *, device: str = "auto", resume: bool = False,
          download: bool = False, stop_after: int | None = None, log_every: int = 50, checkpoint_every: int = 0,
          echo: Callable[[str], None] | None = None, time_limit: float | None = None,
          epoch_end: Callable[[dict[str, Any], torch.nn.Module], bool | None] | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the run in ``out_dir``; returns the run's summary.

    ``stop_after`` ends this invocation after that many epochs, leaving a resumable run;
    ``checkpoint_every`` also saves ``last.pt`` every that many steps within an epoch. SIGTERM or
    SIGINT saves after the current step and stops; the summary's ``signal`` then names it. ``time_limit``
    (seconds) stops the same way once the run's training time (validation excluded) reaches it, then
    reports the test accuracy of the best checkpoint so far (the summary's ``time_limit_hit`` is True).
    ``epoch_end`` is called on rank 0 after each epoch's validation with the epoch's metrics row and the
    trained weights (the module, unwrapped), e.g. to score extra data; its time is not training time. If it
    returns True the run ends there as at a time limit (one process only: ranks must stop together).
    Launched by torchrun, the processes of one run each call this with the same arguments.
    """
    if checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must not be negative, got {checkpoint_every}")
    env = init_distributed(device)
    try:
        with stop_requests() as stop:
            return _train(cfg, Path(data_dir), Path(out_dir), env, resume, download, stop_after, log_every,
                          checkpoint_every, echo, stop, time_limit, epoch_end)
    finally:
        env.close()


def _train(cfg: TrainConfig, data_dir: Path, out_dir: Path, env: DistEnv, resume: bool, download: bool,
           stop_after: int | None, log_every: int, checkpoint_every: int, echo: Callable[[str], None] | None,
           stop: dict[str, int], time_limit: float | None,
           epoch_end: Callable[[dict[str, Any], torch.nn.Module], bool | None] | None = None) -> dict[str, Any]:
    if resume:
        if not (out_dir / LAST).is_file() and not (out_dir / PREVIOUS).is_file():
            raise RunError(f"cannot resume: {out_dir / LAST} does not exist")
    elif (out_dir / LAST).exists():
        raise RunError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    if cfg.sync_bn and env.distributed and env.device.type == "cpu":
        raise RunError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU; drop the flag "
                       "(each process then normalizes over its own share of the batch)")
    if cfg.batch_size % env.world_size:
        raise RunError(f"--batch-size {cfg.batch_size} is the global batch and must divide evenly among the "
                       f"{env.world_size} processes; use a multiple of {env.world_size}")
    # Data first: a missing or bad data folder should not leave an empty run folder behind.
    splits = load_splits(data_dir, cfg.val_size, cfg.split_seed, cfg.train_subset, download=download)
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    env.barrier()
    log = RunLog(out_dir / "train.log" if env.is_main else None, echo)
    dev = env.device
    prepare_device(dev)
    precision = resolve_precision(cfg.precision, dev)
    per_rank = cfg.batch_size // env.world_size
    sampler = ResumableSampler(len(splits.train), env.world_size, env.rank, cfg.seed)
    steps_per_epoch = -(-sampler.num_samples // per_rank)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout).to(dev)
    set_fused_bn(model, cfg.fused_bn)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, dev)
    scheduler, per_step_schedule = build_scheduler(cfg, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    # The average includes BatchNorm statistics (use_buffers), so it can be evaluated as it is.
    ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
        cfg.ema_decay), use_buffers=True) if cfg.ema_decay else None)

    epoch, step, best_acc, best_epoch, history = 0, 0, -1.0, 0, []
    partial = {"loss_sum": 0.0, "images": 0, "seconds": 0.0}  # the current epoch's totals so far
    if resume:
        ckpt, path = load_resume_checkpoint(out_dir, log)
        load_weights(model, ckpt["model"], path)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            if "ema" not in ckpt:
                raise RunError(f"{path} holds no weight average although the config asks for one (ema_decay)")
            ema.load_state_dict(ckpt["ema"])
        epoch, best_acc, best_epoch = ckpt["epoch"], ckpt["best_acc"], ckpt["best_epoch"]
        step, partial = ckpt.get("step", 0), dict(ckpt.get("partial", partial))
        if step and ckpt.get("processes", 1) != env.world_size:
            raise RunError(f"{path} was saved in the middle of an epoch by {ckpt.get('processes', 1)} process(es); "
                           f"resume it with that many (this run has {env.world_size}), or from an epoch end")
        history = list(ckpt["history"])
        where = f"step {step} of epoch {epoch + 1}" if step else f"epoch {epoch}"
        log(f"resuming {out_dir} after {where} (of {cfg.epochs} epochs) from {path.name}")
    start_epoch = epoch

    if env.is_main:
        cfg.save(out_dir / "config.json")
        write_text_atomic(out_dir / "run.json", json.dumps({
            "ghostmixnet": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "device": str(dev), "processes": env.world_size, "threads": torch.get_num_threads(),
            "data_dir": str(Path(data_dir).resolve()), "train_images": len(splits.train),
            "val_images": len(splits.val), "val_is_test": splits.val_is_test, "parameters": count_parameters(model),
        }, indent=2) + "\n")
    val_name = "test-as-val" if splits.val_is_test else "val"
    procs = f" x {env.world_size} processes ({cfg.batch_size // env.world_size} each)" if env.distributed else ""
    log(f"{cfg.model} (width {cfg.width}, {count_parameters(model):,} parameters), recipe {cfg.recipe}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}{procs}, {precision}"
        f"{f', compiled ({resolve_compile_mode(cfg.compile_mode, dev, env.distributed)})' if cfg.compile else ''}"
        f", on {dev}; "
        f"{len(splits.train):,} training images; {selection_note(splits)}")
    warning = slow_precision_warning(dev, precision)
    if warning:
        log(warning)

    batched = BatchPipeline(cfg.augment, compile=cfg.compile) if cfg.augment_backend == "batched" else None
    chunk = resolve_augment_chunk(cfg.augment_chunk, dev)
    if batched is not None:  # raw uint8 batches, gathered on the device from the training set held there
        loader: Any = DeviceBatches(splits.train, sampler, per_rank, dev)
    else:
        loader = DataLoader(ImageDataset(splits.train, train_transform(cfg.augment)), batch_size=per_rank,
                            sampler=sampler, drop_last=False, num_workers=cfg.num_workers,
                            pin_memory=dev.type == "cuda")
    # The loss is read on the host (summed across processes, with the requests to stop) every `sync_every`
    # steps: on a GPU each read makes the host wait for the step to finish before it can queue the next.
    # Between reads a non-finite loss is kept from the weights on the device (optimizer_step).
    sync_every = 1 if dev.type == "cpu" else max(1, log_every)
    train_model: torch.nn.Module = model
    if env.distributed:
        if cfg.sync_bn:
            train_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile:
        train_model = compile_model(train_model, cfg.compile_mode, dev, env.distributed)

    def training_state() -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "model": unwrap(model).state_dict(), "config": cfg.to_dict(),
                "epoch": epoch, "step": step, "partial": dict(partial), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "best_acc": best_acc,
                "best_epoch": best_epoch, "history": history, "processes": env.world_size,
                **({"ema": ema.state_dict()} if ema is not None else {})}

    def save_last() -> None:
        if not env.is_main:
            return
        if not _all_finite(model):  # never let a poisoned checkpoint replace a good one
            raise NonFiniteLossError(f"the weights hold NaN or infinite values at epoch {epoch + 1} step {step}; "
                                     f"nothing was saved, {out_dir / LAST} is the last good checkpoint")
        save_atomic(training_state(), out_dir / LAST, keep_previous=out_dir / PREVIOUS)

    def augment_draws(epoch: int, first: int) -> Callable[[int], torch.Generator]:
        """The generator of each batch's augmentation draws, by its position after step ``first`` of ``epoch``:
        a function of the run's seed, the epoch, the step and the rank alone."""
        return lambda i: torch.Generator().manual_seed(mix_seed(SEED_BATCH_AUGMENT, cfg.seed, epoch, first + i,
                                                                    env.rank))

    def candidates() -> dict[str, torch.nn.Module]:
        """The weights validation chooses among: the trained ones and, if kept, their moving average."""
        return {"trained": unwrap(model), **({"average": ema.module} if ema is not None else {})}

    def run_eval(module: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
                 scoring: str = precision) -> EvalResult:
        env.broadcast_state(module)  # every process evaluates with rank 0's BatchNorm statistics
        return evaluate(module, images, labels, dev, scoring, channels_last=cfg.channels_last, rank=env.rank,
                        world_size=env.world_size, reduce=env.all_reduce_sum, tta=cfg.tta)

    def validate() -> tuple[str, EvalResult, str]:
        """Score every candidate on the validation split; the best one's name and result, and a text
        with each score when there are several."""
        results = {name: run_eval(module, splits.val.images, splits.val.labels)
                   for name, module in candidates().items()}
        name = max(results, key=lambda k: results[k].accuracy)  # ties keep the trained weights
        text = (" (" + ", ".join(f"{k} {100 * r.accuracy:.2f}%" for k, r in results.items()) + ")"
                if len(results) > 1 else "")
        return name, results[name], text

    def finish(time_limit_hit: bool) -> dict[str, Any]:
        """Score the best checkpoint on the test set once; the run's summary."""
        summary: dict[str, Any] = {
            "run_dir": str(out_dir), "epochs_done": epoch, "epochs": cfg.epochs, "best_val_acc": best_acc,
            "best_epoch": best_epoch, "val_is_test": splits.val_is_test,
            "train_seconds": trained_seconds + partial["seconds"], "time_limit_hit": time_limit_hit}
        if best_epoch == 0:
            log("no validated checkpoint yet, so no test accuracy")
            return summary
        scored = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout).to(dev)
        if env.is_main:
            best = load_checkpoint(out_dir / BEST)
            load_weights(scored, best["model"], out_dir / BEST)
        t0 = time.perf_counter()
        # In fp32 whatever the training precision, as `ghostmixnet eval` scores: one checkpoint, one figure.
        test = run_eval(scored, splits.test.images, splits.test.labels, "fp32")  # other ranks get rank 0's weights
        if env.is_main:
            result = {"split": "test", "images": len(splits.test), "checkpoint": BEST, "best_epoch": best_epoch,
                      "selected_on": "test set (optimistic: --val-size 0)" if splits.val_is_test
                      else f"validation split ({len(splits.val)} training images)", "tta": cfg.tta, "precision": "fp32",
                      "best_val_acc": best_acc, **eval_summary(test), "seconds": time.perf_counter() - t0}
            write_text_atomic(out_dir / "test.json", json.dumps(result, indent=2) + "\n")
        log(f"test accuracy of best.pt (epoch {best_epoch}, {val_name}_acc {100 * best_acc:.2f}%): "
            f"{100 * test.accuracy:.2f}% on {len(splits.test):,} images"
            + (" [selected on the test set itself: optimistic]" if splits.val_is_test else ""))
        summary["test_acc"] = test.accuracy
        return summary

    trained_seconds = sum(row["seconds"] for row in history)
    while epoch < cfg.epochs and (stop_after is None or epoch - start_epoch < stop_after):
        sampler.set_epoch(epoch, start=step * per_rank)
        lr = optimizer.param_groups[0]["lr"]
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", log, every=log_every,
                            enabled=env.is_main)
        train_model.train()
        started, stopping, out_of_time = time.perf_counter() - partial["seconds"], 0, False
        # The loss summed on the device since the last read, its images, and the first step it covers.
        unread_loss, unread_images, unread_from = torch.zeros((), dtype=torch.float64, device=dev), 0, step + 1
        batches: Any = loader
        if batched is not None:  # augment uint8 batches where the model runs, a chunk of them at a time
            batches = _explain_compile_failures(augment_in_chunks(
                loader, batched, chunk, augment_draws(epoch, step + 1), MEAN, STD), cfg.compile)
        for images, targets in batches:
            step += 1
            seed = mix_seed(SEED_STEP, cfg.seed, epoch, step, env.rank)
            torch.manual_seed(seed)  # dropout
            mixer = BatchMixer(cfg.mix_prob, cfg.mixup_share, cfg.mixup_alpha, cfg.cutmix_alpha, seed=seed)
            try:
                if cfg.compile:
                    mark_step()
                loss = forward_backward(train_model, images, targets, mixer, scaler, dev, precision,
                                        cfg.label_smoothing, cfg.channels_last)
            except Exception as e:
                if cfg.compile and _compile_failure(e):
                    progress.close()
                    raise _compile_error(e) from e
                raise
            unread_images += images.shape[0]
            unread_loss += loss.double() * images.shape[0]
            late = time_limit is not None and trained_seconds + time.perf_counter() - started >= time_limit
            # Every process reads at the same steps; a lone process also reads at once when asked to stop.
            read = (step % sync_every == 0 or step == steps_per_epoch
                    or (checkpoint_every and step % checkpoint_every == 0)
                    or (not env.distributed and (late or bool(stop["signal"]))))
            if read:
                # One reduction: the loss for the log, and any process's request to stop or lack of time
                # (clocks differ between processes; all must stop at the same step).
                loss_sum, count, signalled, late_anywhere = env.all_reduce_sum(torch.tensor(
                    [float(unread_loss), unread_images, float(stop["signal"]), float(late)],
                    dtype=torch.float64)).tolist()
                unread_loss.zero_()
                unread_images, steps_read = 0, f"step {step}" if unread_from == step else f"steps {unread_from}..{step}"
                unread_from = step + 1
                out_of_time = late_anywhere > 0
                if not np.isfinite(loss_sum):
                    progress.close()
                    raise NonFiniteLossError(
                        f"the training loss became {loss_sum / count} at epoch {epoch + 1} {steps_read}; the weights "
                        f"were not updated with it and {out_dir / LAST} keeps the last good state. Lower --lr, use "
                        "--precision fp32, or resume to retry")
                partial["loss_sum"] += loss_sum
                partial["images"] += int(count)
                # Every process acts on the reduced flag, so all stop at the same step even if only one was
                # signalled.
                stopping = int(stop["signal"]) or (int(signal.SIGTERM) if signalled else 0)
            optimizer_step(optimizer, scaler, loss)
            if per_step_schedule:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            partial["seconds"] = time.perf_counter() - started
            progress.update(step, loss=partial["loss_sum"] / max(partial["images"], 1))
            if out_of_time and step < steps_per_epoch:
                progress.close()
                save_last()
                log(f"time limit of {time_limit:.0f} s of training reached at step {step} of epoch {epoch + 1}")
                return finish(time_limit_hit=True)
            if stopping and step < steps_per_epoch:
                progress.close()
                save_last()
                name = signal.Signals(stopping).name
                log(f"{name} received: saved step {step} of epoch {epoch + 1} to {out_dir / LAST}; "
                    f"continue with: ghostmixnet train --resume {out_dir}")
                return {"run_dir": str(out_dir), "epochs_done": epoch, "step": step, "epochs": cfg.epochs,
                        "signal": stopping, "best_val_acc": best_acc}
            if checkpoint_every and step % checkpoint_every == 0 and step < steps_per_epoch:
                save_last()
        progress.close()
        if not per_step_schedule:
            scheduler.step()
        epoch, step = epoch + 1, 0
        stats, partial = dict(partial), {"loss_sum": 0.0, "images": 0, "seconds": 0.0}
        trained_seconds += stats["seconds"]
        row = {"epoch": epoch, "val_split": "test" if splits.val_is_test else "val", "lr": lr,
               "train_loss": stats["loss_sum"] / max(stats["images"], 1), "val_loss": None, "val_acc": None,
               "weights": None, "images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
               "seconds": stats["seconds"]}
        history.append(row)
        improved, scores = False, ""
        if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
            name, val, scores = validate()
            row.update(val_loss=val.loss, val_acc=val.accuracy, weights=name)
            improved = val.accuracy > best_acc
            if improved:
                best_acc, best_epoch = val.accuracy, epoch
                if env.is_main:
                    save_atomic({"format": FORMAT_VERSION, "model": candidates()[name].state_dict(),
                                 "config": cfg.to_dict(), "epoch": epoch, "weights": name, "val_acc": val.accuracy,
                                 "val_is_test": splits.val_is_test}, out_dir / BEST)
        caller_stops = env.is_main and epoch_end is not None and bool(epoch_end(row, unwrap(model)))
        if env.is_main:
            save_last()
            write_metrics(out_dir / "metrics.csv", history)
            plot_curves(history, out_dir, "test set (selection)" if splits.val_is_test else "validation")
        val_text = (f" {val_name}_loss {row['val_loss']:.4f} {val_name}_acc {100 * row['val_acc']:.2f}%{scores}"
                    f"{' (best)' if improved else ''}" if row["val_acc"] is not None else "")
        log(f"epoch {epoch}/{cfg.epochs} lr {lr:.3g} train_loss {row['train_loss']:.4f}{val_text} "
            f"{row['images_per_s']:.1f} img/s {row['seconds']:.0f}s")
        if stopping and epoch < cfg.epochs:
            # A signal during the epoch's last step: the epoch-end checkpoint above already holds it.
            log(f"{signal.Signals(stopping).name} received: stopped after epoch {epoch}; "
                f"continue with: ghostmixnet train --resume {out_dir}")
            return {"run_dir": str(out_dir), "epochs_done": epoch, "step": 0, "epochs": cfg.epochs,
                    "signal": stopping, "best_val_acc": best_acc}
        if out_of_time and epoch < cfg.epochs:
            log(f"time limit of {time_limit:.0f} s of training reached after epoch {epoch}")
            return finish(time_limit_hit=True)
        if caller_stops and epoch < cfg.epochs:
            log(f"stopped after epoch {epoch} as the caller asked")
            return finish(time_limit_hit=True)

    if epoch < cfg.epochs:
        log(f"stopped after epoch {epoch} of {cfg.epochs}; continue with: ghostmixnet train --resume {out_dir}")
        return {"run_dir": str(out_dir), "epochs_done": epoch, "epochs": cfg.epochs, "best_val_acc": best_acc,
                "best_epoch": best_epoch, "val_is_test": splits.val_is_test}
    return finish(time_limit_hit=False)
