"""The ``ghostmixnet`` command: train, eval, predict, export, quantize, bench, info, ablation."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .bench import BACKENDS
from .config import (
    AUGMENT_BACKENDS,
    AUGMENTATIONS,
    COMPILE_MODES,
    OPTIMIZERS,
    PRECISIONS,
    RECIPE_NOTES,
    RECIPES,
    SCHEDULES,
    TrainConfig,
    field_docs,
    make_config,
)
from .models import ARCHITECTURES
from .quantize import CALIBRATION_METHODS

# Fields with a dedicated flag elsewhere, or none.
NO_FLAG = {"recipe"}
# What an ablation may set: the budget, the same for every row, never the rows' models or recipes.
ABLATION_BUDGET = {"epochs", "batch_size", "train_subset", "val_size", "split_seed", "seed", "precision", "width",
                   "num_workers", "channels_last", "compile", "compile_mode",
                   "augment_chunk"}
CHOICES = {"model": list(ARCHITECTURES), "augment": list(AUGMENTATIONS), "precision": list(PRECISIONS),
           "augment_backend": list(AUGMENT_BACKENDS), "schedule": list(SCHEDULES),
           "compile_mode": list(COMPILE_MODES), "optimizer": list(OPTIMIZERS)}


def _field_type(field: dataclasses.Field) -> type:
    hint = typing.get_type_hints(TrainConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_config_flags(parser: argparse.ArgumentParser, only: set[str] | None = None, recipe: str = "paper") -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size`` for ``batch_size``), or per field in ``only``;
    the help shows ``recipe``'s value of each.

    Defaults are None, meaning "the recipe's value", so that given flags can be told from defaults.
    """
    docs = field_docs()
    values = make_config(recipe if recipe in RECIPES else "paper").to_dict()
    group = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in NO_FLAG or (only is not None and f.name not in only):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        help_text = f"{docs.get(f.name, '')} [{recipe}: {values[f.name]}]"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=None, choices=CHOICES.get(f.name),
                               metavar=None if f.name in CHOICES else f.name.upper(), help=help_text)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - NO_FLAG
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _recipe_in(argv: Sequence[str]) -> str:
    """The ``--recipe`` named on the command line (so that --help shows its values), else ``paper``."""
    for i, arg in enumerate(argv):
        if arg.startswith("--recipe="):
            return arg.split("=", 1)[1]
        if arg == "--recipe" and i + 1 < len(argv):
            return argv[i + 1]
    return "paper"


def _recipe_help() -> str:
    return "preset recipe [paper]: " + "; ".join(f"{name}: {note}" for name, note in RECIPE_NOTES.items())


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    recipe = _recipe_in(list(sys.argv[1:] if argv is None else argv))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser = argparse.ArgumentParser(
        prog="ghostmixnet", description="GhostMixNet: train, evaluate and use a compact CIFAR-10 classifier.",
        parents=[common])
    parser.add_argument("--version", action="version", version=f"ghostmixnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub, common, recipe)
    _eval_parser(sub, common)
    _predict_parser(sub, common)
    _export_parser(sub, common)
    _pack_parser(sub, common)
    _quantize_parser(sub, common)
    _bench_parser(sub, common)
    _info_parser(sub, common)
    _seeds_parser(sub, common, recipe)
    _ablation_parser(sub, common)
    _serve_parser(sub, common)
    return parser


def _serve_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="a classification service and web page (extra: serve)",
                       description="Serve a model over HTTP: POST /predict (multipart images), GET /health, "
                                   "GET /model, a web page at / and the API's documentation at /docs. Needs "
                                   "pip install 'ghostmixnet[serve]'.")
    p.add_argument("model", type=Path, metavar="MODEL", help="a checkpoint, a run folder or an ONNX file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1: this machine only]")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="request size limit [20]")
    p.add_argument("--max-files", type=int, default=32, help="images per request [32]")


def _train_parser(sub: Any, common: argparse.ArgumentParser, recipe: str = "paper") -> None:
    p = sub.add_parser("train", parents=[common], help="train a model with a recipe (or resume a run)",
                       description="Train a model on CIFAR-10. Every recipe field can be overridden by its flag; "
                                   "the defaults shown are the chosen recipe's (--recipe NAME --help shows another's). "
                                   "The default recipe, paper, trains 200 epochs: about two days on a CPU; "
                                   "--recipe fast trains 10.")
    p.add_argument("--recipe", choices=list(RECIPES), default=None, help=_recipe_help())
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding cifar-10-batches-py [./data]")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into --data-dir if missing")
    p.add_argument("--out", type=Path, default=None, help="run folder [runs/MODEL-RECIPE-TIME]")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a stopped run")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="end this invocation after N epochs, leaving a resumable run")
    p.add_argument("--log-every", type=int, default=50, metavar="N",
                   help="steps between log lines when output is not a terminal")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also save last.pt every N steps within an epoch (0: at epoch ends only); SIGTERM and "
                        "SIGINT always save the current step before exiting")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop once training (validation excluded) has taken this long, saving the run, and report "
                        "the test accuracy of the best checkpoint so far")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="size the run to this much training time: time a few steps here, train the epochs that fit "
                        "(instead of --epochs) and stop at the budget should the machine slow down")
    add_config_flags(p, recipe=recipe)


def _eval_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="accuracy, per-class accuracy and confusion matrix",
                       description="Evaluate a checkpoint on the CIFAR-10 test set or the run's validation split.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--out", type=Path, default=None, help="folder for the JSON and PNG [the checkpoint's folder]")
    _inference_flags(p)


def _inference_flags(p: argparse.ArgumentParser) -> None:
    """Where and how a model is run over images: the flags ``eval`` and ``predict`` share."""
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each image's logits over its test-time views: the mirror image, and shifted "
                        "copies if the run has --tta-shift [the run's tta setting]")


def _predict_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("predict", parents=[common], help="classify images or a course test pickle",
                       description="Classify image files/folders (any size: RGB, centre-cropped to a square, "
                                   "resized to 32x32) or one course test pickle (writes ID,Labels CSV). The model is "
                                   "the first path when it is one (a checkpoint, run folder, .onnx or .safetensors "
                                   "file, or the word pretrained), else --weights, else the shipped weights.")
    p.add_argument("inputs", type=Path, nargs="+", metavar="[CHECKPOINT] INPUT")
    p.add_argument("--weights", type=Path, default=None, metavar="CHECKPOINT",
                   help="the model to classify with [the first path if it is a model, else the shipped weights]")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV to write (images: optional; pickle: default submission.csv)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip image files that cannot be decoded, saying which and why (and in the CSV's error "
                        "column), instead of stopping at the first")
    _inference_flags(p)


def _pack_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("pack", parents=[common], help="a checkpoint's weights as a hash-named fp16 safetensors file",
                       description="Write a checkpoint's (or a run folder's best.pt's) weights in half precision as "
                                   "safetensors (no pickle) with its config and recorded accuracy in the metadata, "
                                   "named STEM-HASH8.safetensors after its sha256: what the package ships, and what "
                                   "eval, predict, export, quantize, bench, serve and train --init accept.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=Path("."), help="folder to write into [.]")
    p.add_argument("--name", default=None, metavar="STEM", help="file name before the hash [MODEL_cifar10]")


def _export_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX (BatchNorm folded), verified",
                       description="Export to ONNX with BatchNorm folded and a dynamic batch, then check ONNX "
                                   "Runtime's logits against PyTorch's on CIFAR-10 test images, or on generated "
                                   "ones when --data-dir holds no CIFAR-10 (an export needs no dataset).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", type=Path, default=None, help="file to write [the checkpoint's name with .onnx]")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="CIFAR-10, for the verification images (generated ones without it)")
    p.add_argument("--verify-images", type=int, default=512, metavar="N",
                   help="images to verify on; 0 skips verification")


def _quantize_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("quantize", parents=[common], help="int8 ONNX model by static quantization, with accuracy",
                       description="Export to ONNX, quantize to int8 (per-channel weights, activations calibrated "
                                   "on training images) and report int8 accuracy beside the float model's.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, default=None, help="file to write [the checkpoint's name with -int8.onnx]")
    p.add_argument("--calibration-images", type=int, default=512, metavar="N",
                   help="training images (outside the validation split) to calibrate activation ranges on")
    p.add_argument("--keep-float", default="", metavar="PARTS",
                   help="comma-separated parts to leave in float: depthwise, se, stem, head [none]")
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default="percentile",
                   help="how activation ranges are set from the calibration images [percentile]")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="for --calibration percentile: the percentile of |activation| kept [99.99]")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=False,
                   help="7-bit weights, for x86 CPUs without VNNI")
    p.add_argument("--eval-images", type=int, default=10000, metavar="N",
                   help="test images to compare float and int8 accuracy on; 0 skips")


def _bench_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], help="latency and throughput: PyTorch, fast path, ONNX fp32/int8",
                       description="Time a model at batch 1 (median and p90 latency) and at a large batch "
                                   "(images/s) on each backend, with its size, MACs and share of the measured "
                                   "matrix-multiply peak. MODEL_OR_FILE is a model name (random weights), a "
                                   "checkpoint or an ONNX file (timed with ONNX Runtime only).")
    p.add_argument("source", metavar="MODEL_OR_FILE")
    p.add_argument("--batch-size", type=int, default=256, help="the large batch for throughput [256]")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads [PyTorch's default: the cores]")
    p.add_argument("--repeats", type=int, default=50, help="timed batch-1 calls (a quarter as many large ones) [50]")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first [10]")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {', '.join(BACKENDS)}")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the fast path (needs a C++ compiler on the CPU)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="CIFAR-10, to calibrate the int8 model on training images [random images: same speed]")


def _info_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("info", parents=[common], help="parameters and MACs of a model, per stage")
    p.add_argument("model", choices=list(ARCHITECTURES))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, default=10)


def _seeds_parser(sub: Any, common: argparse.ArgumentParser, recipe: str = "paper") -> None:
    p = sub.add_parser("seeds", parents=[common], help="train a recipe with several seeds: mean and std",
                       description="Train one recipe once per seed (folders seed-N under --out; finished seeds are "
                                   "read back, unfinished ones resumed) and print each run's validation and test "
                                   "accuracy with their mean and standard deviation.")
    p.add_argument("--recipe", choices=list(RECIPES), default="paper", help=_recipe_help())
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds [0,1]")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, default=None, help="parent folder [runs/RECIPE-seeds]")
    p.add_argument("--device", default="auto")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop each run after this much training and score its best checkpoint")
    add_config_flags(p, only={f.name for f in dataclasses.fields(TrainConfig)} - {"seed"}, recipe=recipe)


def _ablation_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ablation", parents=[common], help="train the paper's four table rows on one budget",
                       description="Train the four rows of the paper's table with the same budget and write "
                                   "ablation.md. Finished rows are skipped and unfinished ones resumed.")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--device", default="auto")
    add_config_flags(p, only=ABLATION_BUDGET)


def _budget(cfg: TrainConfig, args: argparse.Namespace, overrides: dict[str, Any], data_dir: Path) -> TrainConfig:
    """``cfg`` sized to ``--time-budget`` on this machine."""
    from .budget import budget_config

    if args.resume is not None:
        raise ValueError("--time-budget sizes a new run; a resumed run keeps its epochs (drop --time-budget)")
    if "epochs" in overrides:
        raise ValueError("--time-budget chooses the number of epochs; give --epochs or --time-budget, not both")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--time-budget times one process; under torchrun give --epochs")
    if args.time_budget <= 0:
        raise ValueError(f"--time-budget must be positive minutes, got {args.time_budget}")
    cfg, plan = budget_config(cfg, data_dir, args.time_budget, args.device, args.download)
    print(f"time budget: {plan.describe()}", flush=True)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from .trainer import resume_config, train

    overrides = config_overrides(args)
    if args.resume is not None and args.out is not None and args.out.resolve() != args.resume.resolve():
        raise ValueError(f"--resume continues the run in {args.resume} in place; --out {args.out} does not apply: "
                         "drop --out (copy the run folder first to continue a copy)")
    if args.resume is not None:
        cfg, data_dir = resume_config(args.resume, overrides, args.recipe)
        data_dir, out = args.data_dir or data_dir, args.resume
    else:
        cfg = make_config(args.recipe or "paper", **overrides)
        data_dir = args.data_dir or Path("data")
        out = args.out or Path("runs") / f"{cfg.model}-{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    time_limit = args.time_limit
    if args.time_budget is not None:
        cfg = _budget(cfg, args, overrides, data_dir)
        time_limit = time_limit or args.time_budget
    summary = train(cfg, data_dir, out, device=args.device, resume=args.resume is not None,
                    download=args.download, stop_after=args.stop_after, log_every=args.log_every,
                    checkpoint_every=args.checkpoint_every, time_limit=None if time_limit is None else 60 * time_limit)
    if summary.get("signal"):
        return 128 + summary["signal"]  # the shell's convention for "ended by this signal", so schedulers requeue
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {summary['run_dir']}")
    return 0


def _beside(checkpoint: Path, name: str) -> Path:
    """Where a command writes by default: beside the checkpoint, or in the working directory for the shipped
    weights (never inside the installed package)."""
    from .pretrained import WEIGHTS_DIR

    if checkpoint.resolve().parent == WEIGHTS_DIR.resolve():
        return Path(name)
    return checkpoint.parent / name


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import DataError, load_splits
    from .engine import evaluate, resolve_device
    from .export import load_classifier
    from .report import write_evaluation

    model, cfg, ckpt = load_classifier(args.checkpoint)
    if cfg is None:
        raise DataError(f"{args.checkpoint} carries no ghostmixnet config (not exported by ghostmixnet), so its "
                        "validation split is unknown; export it with `ghostmixnet export`")
    if args.split == "val" and cfg.val_size == 0:
        raise DataError("this run had no validation split (--val-size 0 selected on the test set); use --split test")
    splits = load_splits(args.data_dir, cfg.val_size, cfg.split_seed)
    data = splits.test if args.split == "test" else splits.val
    device = resolve_device(args.device)
    tta = cfg.tta if args.tta is None else args.tta
    result = evaluate(model.to(device), data.images, data.labels, device, batch_size=args.batch_size, tta=tta,
                      tta_shift=cfg.tta_shift if tta else 0)
    write_evaluation(result, args.checkpoint, cfg, ckpt.get("epoch", "?"), args.split, len(data), tta,
                     args.out or _beside(args.checkpoint, "."))
    return 0


def is_model_path(path: Path) -> bool:
    """Whether a path names a model rather than images: a checkpoint, weights or ONNX file, a run folder, or
    the word ``pretrained``."""
    from .pretrained import PRETRAINED

    return (path.suffix.lower() in (".pt", ".onnx", ".safetensors") or (path.is_dir() and (path / "best.pt").is_file())
            or (str(path) == PRETRAINED and not path.exists()))


def cmd_predict(args: argparse.Namespace) -> int:
    from .checkpoint import resolve_checkpoint
    from .engine import resolve_device
    from .export import load_classifier
    from .predict import predict_inputs
    from .pretrained import PRETRAINED

    weights, inputs = args.weights, list(args.inputs)
    if weights is None and is_model_path(inputs[0]):
        weights, inputs = inputs[0], inputs[1:]
        if not inputs:
            raise ValueError(f"{weights} is a model; give images (or a course pickle) to classify after it")
    if weights is None:
        weights = Path(PRETRAINED)
    if weights.suffix.lower() != ".onnx":
        weights = resolve_checkpoint(weights)
    print(f"model: {weights.name}", file=sys.stderr)  # which one was taken when none was named
    model, cfg, _ = load_classifier(weights)
    tta = (cfg is not None and cfg.tta) if args.tta is None else args.tta
    device = resolve_device(args.device)
    predict_inputs(model.to(device), inputs, device, args.out, batch_size=args.batch_size, tta=tta,
                   skip_bad=args.skip_bad, tta_shift=cfg.tta_shift if cfg is not None else 0)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from .pretrained import pack_checkpoint, sha256_of

    path = pack_checkpoint(args.checkpoint, args.out, args.name)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {sha256_of(path)})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    out = args.out or _beside(args.checkpoint, args.checkpoint.stem + ".onnx")
    export_checkpoint(args.checkpoint, out, args.data_dir,
                      args.verify_images)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize import quantize_checkpoint

    keep = [k.strip() for k in args.keep_float.split(",") if k.strip()]
    out = args.out or _beside(args.checkpoint, args.checkpoint.stem + "-int8.onnx")
    quantize_checkpoint(args.checkpoint, out,
                        args.data_dir, calibration_count=args.calibration_images, keep_float=keep,
                        reduce_range=args.reduce_range, calibration=args.calibration, percentile=args.percentile,
                        eval_images=args.eval_images)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import format_bench, run_bench
    from .data import load_cifar10

    for name, value in (("--batch-size", args.batch_size), ("--repeats", args.repeats), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must not be negative, got {args.warmup}")
    calibration = None
    if args.data_dir is not None:
        calibration = load_cifar10(args.data_dir, train=True).images[:256]
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    rows, info = run_bench(args.source, batch_size=args.batch_size, threads=args.threads, repeats=args.repeats,
                           warmup=args.warmup, backends=backends, compile=args.compile,
                           calibration_images=calibration, log=lambda m: print(m, file=sys.stderr))
    print(format_bench(rows, info))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .cost import format_cost_table, stage_costs
    from .models import build_model, count_parameters

    model = build_model(args.model, num_classes=args.num_classes, width=args.width)
    rows = stage_costs(model)
    macs = sum(r.macs for r in rows)
    print(f"{args.model}: {ARCHITECTURES[args.model].description}")
    print(f"width {args.width}, {args.num_classes} classes, input 3x32x32")
    print(f"parameters: {count_parameters(model):,}")
    print(f"MACs per image: {macs:,} ({macs / 1e9:.3f} GMAC, {2 * macs / 1e9:.3f} GFLOP; PyTorch FLOP counter)")
    print(format_cost_table(rows))
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from .seeds import run_seeds, seeds_markdown

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    out = args.out or Path("runs") / f"{args.recipe}-seeds"
    result = run_seeds(args.recipe, seeds, args.data_dir, out, config_overrides(args), device=args.device,
                       time_limit=None if args.time_limit is None else 60 * args.time_limit)
    print(seeds_markdown(result), end="")
    print(f"wrote {out / 'seeds.md'} and {out / 'seeds.json'}")
    print(f"test accuracy: {100 * result['test_mean']:.2f} ± {100 * result['test_std']:.2f}% over {len(seeds)} seed(s)")
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from .ablation import run_ablation

    print(run_ablation(args.data_dir, args.out, config_overrides(args), device=args.device), end="")
    print(f"wrote {args.out / 'ablation.md'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Limits, serve

    serve(args.model, args.host, args.port, args.device,
          Limits(max_bytes=int(args.max_upload_mb * 2**20), max_files=args.max_files))
    return 0


COMMANDS = {"serve": cmd_serve, "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "export": cmd_export,
            "quantize": cmd_quantize, "pack": cmd_pack, "bench": cmd_bench, "info": cmd_info, "ablation": cmd_ablation,
            "seeds": cmd_seeds}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: runs a subcommand; errors print one line (a traceback only with ``--debug``)."""
    args = build_parser(argv).parse_args(argv)
    try:
        if isinstance(getattr(args, "checkpoint", None), Path) and args.checkpoint.suffix.lower() != ".onnx":
            from .checkpoint import resolve_checkpoint

            # A run folder stands for its best.pt: resolved once, here, for every command taking a checkpoint.
            args.checkpoint = resolve_checkpoint(args.checkpoint)
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; a run keeps its last saved step in last.pt: continue it with "
              "ghostmixnet train --resume RUN_DIR", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f"error: {e}" if str(e) else f"error: {type(e).__name__}", file=sys.stderr)
        if not _expected(e):
            print("(an unexpected error; rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _expected(e: Exception) -> bool:
    from .checkpoint import CheckpointError
    from .data import DataError
    from .export import ExportError
    from .trainer import RunError

    return isinstance(e, (CheckpointError, DataError, ExportError, RunError, ValueError, FloatingPointError,
                          OSError))


if __name__ == "__main__":
    sys.exit(main())
