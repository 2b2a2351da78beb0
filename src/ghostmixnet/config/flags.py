"""The config's fields as command-line flags: one per field, its docstring as help, checked as it is parsed."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from ..checks import count, number
from .recipes import RECIPES, make_config
from .types import CHOICES, TrainConfig, field_docs

# Fields with a dedicated flag, or none: the class list and normalisation are the data's, set by the run.
NO_FLAG = {"recipe", "classes", "mean", "std"}


def add_config_flags(parser: argparse.ArgumentParser, only: set[str] | None = None, recipe: str = "paper") -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size`` for ``batch_size``), or per field in ``only``;
    the help shows ``recipe``'s value of each. Defaults are None, "the recipe's value", so that given flags can
    be told from defaults."""
    docs, values = field_docs(), make_config(recipe if recipe in RECIPES else "paper").to_dict()
    group = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    for f, hint in ((f, typing.get_type_hints(TrainConfig)[f.name]) for f in dataclasses.fields(TrainConfig)):
        if f.name in NO_FLAG or (only is not None and f.name not in only):
            continue
        kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)  # int | None: int
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{docs.get(f.name, '')} [{recipe}: {values[f.name]}]"
        if hint == bool | str:  # on, off or auto: --compile, --no-compile, --compile auto
            group.add_argument(flag, action=OnOffAuto, default=None, help=help_text)
        elif kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=field_type(f.name, checked(number) if kind is float else kind, recipe),
                               default=None, help=help_text, choices=CHOICES.get(f.name),
                               metavar=None if f.name in CHOICES else f.name.upper())


class OnOffAuto(argparse.Action):
    """A switch with a third value: ``--flag`` (True), ``--flag auto`` ("auto") and ``--no-flag`` (False)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        options = [*option_strings, *(f"--no-{o[2:]}" for o in option_strings)]
        super().__init__(options, dest, nargs="?", metavar="auto", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        negated = bool(option_string and option_string.startswith("--no-"))
        if values not in (None, "auto") or (negated and values is not None):
            raise argparse.ArgumentError(self, f"takes no value or 'auto', got {values!r}")
        setattr(namespace, self.dest, False if negated else "auto" if values == "auto" else True)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - NO_FLAG
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def checked(check: Callable[..., Any], **bounds: Any) -> Callable[[str], Any]:
    """An argument type from a check of :mod:`ghostmixnet.checks`: a bad number is refused as it is parsed."""
    def convert(text: str) -> Any:
        try:
            return check(text, "", **bounds)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def field_type(name: str, kind: Callable[[str], Any], recipe: str) -> Callable[[str], Any]:
    """An argument type for a config field: the value converted, then refused as it is parsed when the config
    would refuse it on its own (what depends on another field is checked when the config is made)."""
    def convert(text: str) -> Any:
        value = kind(text)
        try:
            make_config(recipe if recipe in RECIPES else "paper", **{name: value})
        except ValueError as e:
            own = [p for p in str(e).removeprefix("invalid configuration: ").split("; ") if p.startswith(f"{name} ")]
            if own:
                raise argparse.ArgumentTypeError(own[0].removeprefix(f"{name} ")) from None
        return value
    convert.__name__ = getattr(kind, "__name__", name)  # what argparse names in "invalid X value"
    return convert


COUNT, COUNT0, POSITIVE = checked(count), checked(count, minimum=0), checked(number, above=0)
FRACTION = checked(number, above=0, below=1)
