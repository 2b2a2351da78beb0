"""The ``ghostmixnet`` command: each subcommand parses its flags and makes one call into the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .checks import count, names, number
from .config import DATASETS, RECIPE_NOTES, RECIPES, TrainConfig
from .config.flags import COUNT, COUNT0, FRACTION, POSITIVE, add_config_flags, checked, config_overrides
from .data.images import MAX_PIXELS
from .deploy.bench import BACKENDS, bench
from .deploy.calibrate import calibrate_checkpoint
from .deploy.export import FORMATS, export_checkpoint
from .deploy.pack import pack_checkpoint
from .deploy.quantize import CALIBRATION_METHODS, quantize_checkpoint
from .deploy.sizes import describe_deployment
from .errors import EXPECTED_ERRORS, one_line
from .files import descriptors_exhausted
from .infer.calibrate import SCORE
from .infer.novelty import SCORES
from .model.architectures import ARCHITECTURES
from .model.cost import describe_model
from .predict.classify import predict_files
from .report.evaluation import evaluate_checkpoint
from .serve.choose import VIEWS
from .serve.command import serve
from .serve.runtime import RUNTIMES as SERVE_RUNTIMES
from .serve.served import CHECK_IMAGES
from .serve.uploads import Limits
from .train.ablation import run_ablation
from .train.launch import launch
from .train.seeds import run_seeds, seeds_report
from .version import __version__

# What an ablation may set: the budget, the same for every row, never the rows' models or recipes.
ABLATION_BUDGET = {"epochs", "batch_size", "train_subset", "val_size", "split_seed", "seed", "precision", "width",
                   "num_workers", "channels_last", "compile", "compile_mode", "augment_chunk", "dataset", "holdout"}
RECIPE_HELP = "preset recipe [paper]: " + "; ".join(f"{name}: {note}" for name, note in RECIPE_NOTES.items())
# The flags several commands share, as each has them unless it says otherwise (its own help, default or type).
FLAGS: dict[str, dict[str, Any]] = {
    "--device": {"default": "auto"},
    "--data-dir": {"type": Path, "default": Path("data")},
    "--out": {"type": Path, "default": None},
    "--batch-size": {"type": COUNT, "default": 256},
    "--skip-bad": {"action": "store_true"},
    "--eval-images": {"type": COUNT0, "default": 10000, "metavar": "N"},
    "--recipe": {"choices": list(RECIPES), "default": "paper", "help": RECIPE_HELP},
    "--tta": {"action": argparse.BooleanOptionalAction, "default": None,
              "help": "average each image's logits over its test-time views: the mirror image, and shifted copies if "
                      "the run has --tta-shift [the run's tta setting]"},
}
INFERENCE_FLAGS = ("--device", "--batch-size", "--tta")  # where and how eval and predict run a model over images
Command = Callable[..., argparse.ArgumentParser]  # what adds one command to the parser


def flag(p: argparse.ArgumentParser, name: str, help: str | None = None, **changes: Any) -> None:
    """Add a shared flag (:data:`FLAGS`) to ``p``, with this command's help and any other changes."""
    p.add_argument(name, **FLAGS[name] | ({"help": help} if help else {}) | changes)


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as the exit status :func:`main` returns (2, as argparse would exit with)."""

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    """A usage error, raised by :class:`_Parser` for :func:`main` to report."""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command (``argv`` only tells it which recipe's values ``--help`` shows)."""
    named = argparse.ArgumentParser(add_help=False)  # the recipe named, so that --help shows its values
    named.add_argument("--recipe", default="paper")
    recipe = named.parse_known_args(argv)[0].recipe
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser = _Parser(
        prog="ghostmixnet", description="GhostMixNet: train, evaluate and use a compact CIFAR-10 classifier (or one "
                                        "of your own classes).", parents=[common])
    parser.add_argument("--version", action="version", version=f"ghostmixnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], Any], help: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, **kw)
        p.set_defaults(run=run)
        return p

    for add in (_training_commands, _inference_commands, _deployment_commands, _int8_and_timing_commands,
                _service_commands):
        add(command, recipe)
    return parser


def _training_commands(command: Command, recipe: str) -> None:
    p = command("train", cmd_train, "train a model with a recipe (or resume a run)",
                description="Train a model on CIFAR-10, CIFAR-100 or a folder of your own classes (--dataset). "
                            "Every recipe field can be overridden by its flag; the defaults "
                            "shown are the chosen recipe's (--recipe NAME --help shows another's). The default recipe, "
                            "paper, trains 200 epochs: about two days on a CPU; --recipe fast trains 10.")
    flag(p, "--recipe", default=None)
    flag(p, "--data-dir", "folder holding cifar-10-batches-py (or cifar-100-python), or with --dataset folder the "
         "folder of class sub-folders (or of train/, val/, test/) [./data]", default=None)
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 (or CIFAR-100) into --data-dir if missing")
    flag(p, "--skip-bad", "--dataset folder: leave out images that cannot be read, naming them, instead of stopping")
    flag(p, "--out", "run folder [runs/MODEL-RECIPE-TIME]")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a stopped run")
    flag(p, "--device", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--stop-after", type=COUNT, default=None, metavar="N",
                   help="end this invocation after N epochs, leaving a resumable run")
    p.add_argument("--log-every", type=COUNT, default=50, metavar="N",
                   help="steps between log lines when output is not a terminal")
    p.add_argument("--checkpoint-every", type=COUNT0, default=0, metavar="N",
                   help="also save last.pt every N steps within an epoch (0: at epoch ends only); SIGTERM and "
                        "SIGINT always save the current step before exiting")
    p.add_argument("--time-limit", type=POSITIVE, default=None, metavar="MINUTES",
                   help="stop once training (validation excluded) has taken this long, saving the run, and report "
                        "the test accuracy of the best checkpoint so far")
    p.add_argument("--time-budget", type=POSITIVE, default=None, metavar="MINUTES",
                   help="size the run to this much training time: time a few steps here, train the epochs that fit "
                        "(instead of --epochs) and stop at the budget should the machine slow down")
    add_config_flags(p, recipe=recipe)
    p = command("seeds", cmd_seeds, "train a recipe with several seeds: mean and std",
                description="Train one recipe once per seed (folders seed-N under --out; finished seeds are read "
                            "back, unfinished ones resumed) and print each run's validation and test accuracy with "
                            "their mean and standard deviation.")
    flag(p, "--recipe")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds [0,1]")
    flag(p, "--data-dir")
    flag(p, "--out", "parent folder [runs/RECIPE-seeds]")
    flag(p, "--device")
    p.add_argument("--time-limit", type=POSITIVE, default=None, metavar="MINUTES",
                   help="stop each run after this much training and score its best checkpoint")
    add_config_flags(p, only={f.name for f in dataclasses.fields(TrainConfig)} - {"seed"}, recipe=recipe)

    p = command("ablation", CALLS["ablation"], "train the paper's four table rows on one budget",
                description="Train the four rows of the paper's table with the same budget and write ablation.md. "
                            "Finished rows are skipped and unfinished ones resumed.")
    flag(p, "--data-dir")
    flag(p, "--out", default=Path("runs/ablation"))
    flag(p, "--device")
    add_config_flags(p, only=ABLATION_BUDGET)


def _inference_commands(command: Command, recipe: str) -> None:
    p = command("eval", CALLS["eval"], "accuracy, per-class accuracy and confusion matrix",
                description="Evaluate a checkpoint on the test set of its data (CIFAR-10, CIFAR-100 or a folder, as it "
                            "was trained) or on its run's validation split.")
    p.add_argument("checkpoint", type=Path)
    flag(p, "--data-dir", "folder holding the data (cifar-10-batches-py, cifar-100-python, or the class folders)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="data of the model's classes other than its own, e.g. a folder [the model's dataset]")
    flag(p, "--skip-bad", "leave out a folder's images that cannot be read")
    p.add_argument("--split", choices=["test", "val"], default="test")
    flag(p, "--out", "folder for the JSON and PNG [the checkpoint's folder]")
    for name in INFERENCE_FLAGS:
        flag(p, name)

    p = command("predict", CALLS["predict"], "classify images or a course test pickle",
                description="Classify image files/folders (any size: RGB, centre-cropped to a square, resized to "
                            "32x32) or one course test pickle (writes ID,Labels CSV). The model is the first path when "
                            "it is one (a checkpoint, run folder, .onnx or .safetensors file, or the word pretrained; "
                            "pretrained:ghostmixnet-ic01 names a member's shipped weights), "
                            "else --weights, else the shipped weights.")
    p.add_argument("inputs", type=Path, nargs="+", metavar="[CHECKPOINT] INPUT")
    p.add_argument("--weights", type=Path, default=None, metavar="CHECKPOINT",
                   help="the model to classify with [the first path if it is a model, else the shipped weights]")
    flag(p, "--out", "CSV to write (images: optional; pickle: submission.csv)")
    p.add_argument("--max-pixels", type=COUNT, default=MAX_PIXELS, help="larger images are refused, unread, as bad "
                   f"files [{MAX_PIXELS:,}]")
    flag(p, "--skip-bad", "skip image files that cannot be decoded, saying which and why (and in the CSV's error "
         "column), instead of stopping at the first")
    for name in INFERENCE_FLAGS:
        flag(p, name)
    p = command("info", CALLS["info"],
                "parameters, MACs and activation memory of a model; with --deploy, files and latency",
                description="Parameters and MACs per stage, and the peak activation memory of one image (measured). "
                            "--deploy adds what a device needs to know: the file size in each format this machine "
                            "can write, and a short latency table of every installed runtime (ghostmixnet bench "
                            "measures it fully, with accuracy). Sizes and speed do not depend on the weights.")
    p.add_argument("model", choices=list(ARCHITECTURES))
    p.add_argument("--width", type=POSITIVE, default=1.0)
    p.add_argument("--num-classes", type=COUNT, default=10)
    p.add_argument("--image-size", type=COUNT, default=32, help="side of the input images in pixels (default 32)")
    p.add_argument("--deploy", action="store_true",
                   help="also export to each format (file sizes) and time each runtime (a few minutes)")


def _deployment_commands(command: Command, recipe: str) -> None:
    p = command("export", CALLS["export"], "export a checkpoint to ONNX, ExecuTorch or TFLite Micro, verified",
                description="Export the folded inference graph to ONNX (dynamic batch), ExecuTorch (.pte, XNNPACK, "
                            "fp32 or int8; extra: executorch) or int8 LiteRT for TFLite Micro (.tflite, with the "
                            "arena it needs; extra: micro), then check the file's logits, run in its own runtime, "
                            "against PyTorch's on the model's test images (generated ones without --data-dir).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", choices=list(FORMATS), default="onnx",
                   help="onnx, executorch, executorch-int8 or tflite (int8 ones calibrated on training images)")
    p.add_argument("--batch", type=COUNT, default=1,
                   help="for ExecuTorch: the program's fixed batch size [1, what a device classifies at a time]")
    flag(p, "--out", "file to write [the checkpoint's name with .onnx, .pte or -int8.pte]")
    flag(p, "--data-dir", "the model's data: verification images (generated ones without it), int8 calibration")
    p.add_argument("--verify-images", type=COUNT0, default=512, metavar="N",
                   help="images to verify on; 0 skips verification")

    p = command("pack", CALLS["pack"], "a checkpoint's weights as a hash-named fp16 safetensors file",
                description="Write a checkpoint's (or a run folder's best.pt's) weights in half precision as "
                            "safetensors (no pickle) with its config and recorded accuracy in the metadata, named "
                            "STEM-HASH8.safetensors after its sha256: what the package ships, and what eval, predict, "
                            "export, quantize, bench, serve and train --init accept.")
    p.add_argument("checkpoint", type=Path)
    flag(p, "--out", default=Path("."), help="folder to write into [.]")
    p.add_argument("--name", default=None, metavar="STEM",
                   help="file name before the hash [MODEL_DATASET, e.g. ghostmixnet_cifar10]")

    p = command("calibrate", CALLS["calibrate"], "fit a model's temperature and 'not sure' threshold",
                description="Fit a temperature (calibrated probabilities) and an out-of-distribution threshold "
                            "(answers below it are marked 'not sure') on the model's validation split, and write "
                            "them into it: a checkpoint in place (or as --out), a weights file as a new hash-named "
                            "file in --out. New training runs do this for best.pt themselves.")
    p.add_argument("checkpoint", type=Path,
                   help="checkpoint, run folder, weights file or pretrained (pretrained:MODEL: a member's weights)")
    flag(p, "--data-dir")
    flag(p, "--out", "checkpoint to write [in place]; for a weights file, a folder [beside it, or .]")
    p.add_argument("--keep", type=FRACTION, default=0.95,
                   help="share of validation images kept above the 'not sure' threshold [0.95]")
    p.add_argument("--score", choices=SCORES, default=SCORE,
                   help=f"the 'not sure' score [{SCORE}]: energy or msp of the logits, or knn, mahalanobis or vim of "
                        "the features, fit on training images and stored with the model (MODEL_CARD.md compares "
                        "them)")
    flag(p, "--device")
    flag(p, "--batch-size")



def _int8_and_timing_commands(command: Command, recipe: str) -> None:
    p = command("quantize", CALLS["quantize"], "int8 ONNX model by static quantization, with accuracy",
                description="Export to ONNX, quantize to int8 (per-channel weights, activations calibrated on "
                            "training images) and report int8 accuracy beside the float model's.")
    p.add_argument("checkpoint", type=Path)
    flag(p, "--data-dir")
    flag(p, "--out", "file to write [the checkpoint's name with -int8.onnx]")
    p.add_argument("--calibration-images", type=COUNT, default=512, metavar="N",
                   help="training images (outside the validation split) to calibrate activation ranges on")
    p.add_argument("--keep-float", default="", metavar="PARTS",
                   help="comma-separated parts to leave in float: depthwise, se, stem, head [none]")
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default="percentile",
                   help="how activation ranges are set from the calibration images [percentile]")
    p.add_argument("--percentile", type=checked(number, above=0, maximum=100), default=99.99,
                   help="for --calibration percentile: the percentile of |activation| kept [99.99]")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit weights, for x86 CPUs without VNNI [auto: where this CPU has no int8 dot product]")
    flag(p, "--eval-images", "test images to compare float and int8 accuracy on; 0 skips")

    p = command("bench", cmd_bench, "latency, throughput and accuracy: PyTorch, ONNX Runtime, OpenVINO, ExecuTorch",
                description="Time a model at batch 1 (median and p90 latency, at each --threads count) and at a large "
                            "batch (images/s) on each backend, with its size, MACs and share of the measured "
                            "matrix-multiply peak, the batch-1 floor that peak sets (2 x MACs / peak) and each median "
                            "against it, and with --data-dir its accuracy on the test images. Backends whose "
                            "runtime is not installed are skipped, naming the extra (openvino, executorch). "
                            "MODEL_OR_FILE is a model name (random weights), a checkpoint or an ONNX file (timed with "
                            "ONNX Runtime and OpenVINO only).")
    p.add_argument("source", metavar="MODEL_OR_FILE")
    flag(p, "--batch-size", "the large batch for throughput [256]")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="intra-op thread counts for batch 1, e.g. 1,2; the largest for the large batch [the cores]")
    p.add_argument("--repeats", type=COUNT, default=50, help="timed batch-1 calls (a quarter as many large ones) [50]")
    p.add_argument("--warmup", type=COUNT0, default=10, help="untimed calls first [10]")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {', '.join(BACKENDS)}")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the fast path (needs a C++ compiler on the CPU)")
    flag(p, "--data-dir", "the model's data: int8 calibration on training images [random: same speed], and accuracy",
         default=None)
    flag(p, "--eval-images", "with --data-dir: test images to measure each backend's accuracy on; 0 skips [10000]")


def _service_commands(command: Command, recipe: str) -> None:
    p = command("serve", CALLS["serve"], "a classification service and web page (extra: serve)",
                description="Serve a model over HTTP: POST /predict (multipart images), GET /health, GET /model, a "
                            "web page at / and the API's documentation at /docs. Needs pip install "
                            "'ghostmixnet[serve]'.")
    p.add_argument("model", type=Path, nargs="?", default=Path("pretrained"), metavar="MODEL",
                   help="a checkpoint, run folder, weights or ONNX file [pretrained: the shipped weights]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1: this machine only]")
    p.add_argument("--port", type=checked(count, minimum=0, maximum=65535), default=8000)
    flag(p, "--device")
    p.add_argument("--max-upload-mb", type=POSITIVE, default=20.0, help="request size limit [20]")
    p.add_argument("--max-files", type=COUNT, default=32, help="images per request [32]")
    p.add_argument("--runtime", choices=("auto",) + SERVE_RUNTIMES, default="auto",
                   help="what runs the model [auto: the fastest installed whose accuracy is within 0.3 points of "
                        "PyTorch fp32's on validation images; int8 only with --data-dir]")
    p.add_argument("--views", type=int, choices=VIEWS, default=1,
                   help="test-time views per image, their logits averaged: 1; 2 (with the mirror); 6 (also "
                        "shifted) [1]. Each multiplies the model's work")
    flag(p, "--data-dir", "the model's data: int8 calibration on training images, and each runtime's accuracy "
                          "measured on validation images (once; kept in the cache) [none]", default=None)
    p.add_argument("--check-images", type=COUNT, default=CHECK_IMAGES,
                   help=f"with --data-dir: validation images each runtime's accuracy is measured on [{CHECK_IMAGES}]")
    p.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn",
                   help="uvicorn in this process, or Ray Serve with --replicas replicas (extra: ray) [uvicorn]")
    p.add_argument("--replicas", type=COUNT, default=2, help="with --engine ray: replicas of the model [2]")


# The commands that are one library call, with the flags they pass.
CALLS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "eval": lambda a: evaluate_checkpoint(a.checkpoint, a.data_dir, a.split, a.out, a.device, a.batch_size, a.tta,
                                          dataset=a.dataset, skip_bad=a.skip_bad),
    "predict": lambda a: predict_files(a.inputs, a.weights, a.out, a.device, a.batch_size, a.tta, a.skip_bad,
                                       max_pixels=a.max_pixels),
    "pack": lambda a: pack_checkpoint(a.checkpoint, a.out, a.name, echo=print),
    "calibrate": lambda a: calibrate_checkpoint(a.checkpoint, a.data_dir, a.out, a.keep, a.device, a.batch_size,
                                                a.score),
    "export": lambda a: export_checkpoint(a.checkpoint, a.out, a.data_dir, a.verify_images, format=a.format,
                                          batch=a.batch),
    "quantize": lambda a: quantize_checkpoint(a.checkpoint, a.out, a.data_dir, calibration_count=a.calibration_images,
                                              keep_float=a.keep_float, reduce_range=a.reduce_range,
                                              calibration=a.calibration, percentile=a.percentile,
                                              eval_images=a.eval_images),
    "info": lambda a: print(describe_model(a.model, a.width, a.num_classes, a.image_size)
                            + (f"\n{describe_deployment(a.model, a.width, a.num_classes, a.image_size)}" if a.deploy
                               else "")),
    "ablation": lambda a: print(run_ablation(a.data_dir, a.out, config_overrides(a), device=a.device)
                                + f"wrote {a.out / 'ablation.md'}"),
    "serve": lambda a: serve(a.model, a.host, a.port, a.device, Limits(max_bytes=int(a.max_upload_mb * 2**20),
                                                                       max_files=a.max_files),
                             a.runtime, a.views, a.data_dir, a.check_images, a.engine, a.replicas),
}


def cmd_train(a: argparse.Namespace) -> int:
    summary = launch(a.recipe, config_overrides(a), data_dir=a.data_dir, out=a.out, resume=a.resume, device=a.device,
                     download=a.download, stop_after=a.stop_after, log_every=a.log_every,
                     checkpoint_every=a.checkpoint_every, time_limit=a.time_limit, time_budget=a.time_budget,
                     skip_bad=a.skip_bad)
    # A run ended by a signal exits as the shell's convention says (128 + its number), so schedulers requeue it.
    return 128 + summary["signal"] if summary.get("signal") else 0


def cmd_bench(a: argparse.Namespace) -> None:
    threads = tuple(count(t, "--threads") for t in names(a.threads)) if a.threads else None
    print(bench(a.source, batch_size=a.batch_size, threads=threads, repeats=a.repeats, warmup=a.warmup,
                backends=a.backends, compile=a.compile, data_dir=a.data_dir, eval_images=a.eval_images))


def cmd_seeds(a: argparse.Namespace) -> None:
    out = a.out or Path("runs") / f"{a.recipe}-seeds"
    print(seeds_report(run_seeds(a.recipe, a.seeds, a.data_dir, out, config_overrides(a), device=a.device,
                                 time_limit=None if a.time_limit is None else 60 * a.time_limit), out), end="")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: runs a subcommand; errors print one line (a traceback only with ``--debug``)."""
    try:
        args = build_parser(argv).parse_args(argv)
        status = args.run(args)  # train's exit status; what the library calls of CALLS return is not one
        return status if args.run is cmd_train else 0
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; a run keeps its last saved step in last.pt: continue it with "
              "ghostmixnet train --resume RUN_DIR", file=sys.stderr)
        return 130
    except Exception as e:
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        message, exhausted = one_line(e), descriptors_exhausted()
        if exhausted is not None and "too many files are open" not in message:  # the cause, in other words
            message = f"{exhausted}; the command stopped with: {message}"
        print(f"error: {message}", file=sys.stderr)
        if not isinstance(e, EXPECTED_ERRORS) and exhausted is None:
            print("(an unexpected error; rerun with --debug for the traceback)", file=sys.stderr)
        return 1
