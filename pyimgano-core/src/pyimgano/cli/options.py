"""Options shared by the commands: one name, one meaning, one form in every command.

- ``--set KEY=VALUE`` (repeatable): a parameter, stored in ``args.assignments``;
  ``NAME.key=value`` targets one component (:func:`parse_assignment`).
- ``--json``: print the command's result as JSON on stdout (files are written by
  ``--save-*`` options).
- ``--image-threshold SPEC`` / ``--pixel-threshold SPEC``: a threshold spec
  (``quantile:Q``, ``fixed:V``, ``f1``; a bare number V is ``fixed:V``). Commands that fit
  take every form; ``predict`` applies a fixed value (:func:`fixed_threshold`).
- The pipeline settings (``--postprocess``, the thresholds, ``--val-fraction``) and the
  few-shot settings are built from their pydantic fields (:func:`add_model_options`), so a
  default or a help text is written once, in the field.

An old spelling keeps working for one release with a deprecation line on stderr
(:func:`add_deprecated`; the dispatcher applies it, :func:`apply_deprecated`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from pyimgano.errors import InvalidParams

NOT_GIVEN = None  # an option's argparse default: the settings' own default applies


# -- --set ------------------------------------------------------------------------------------------
def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments", help=help)


def parse_value(raw: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, true, null, lists), else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_assignment(item: str) -> tuple[str | None, str, Any]:
    """``NAME.key=value`` -> (NAME, key, value); ``key=value`` -> (None, key, value)."""
    left, sep, raw = item.partition("=")
    left = left.strip()
    if not sep or not left:
        raise InvalidParams(f"--set {item!r}: expected key=value or NAME.key=value")
    target, dot, key = left.rpartition(".")
    if not dot:
        target, key = "", left
    if not key.isidentifier():
        raise InvalidParams(f"--set {item!r}: {key!r} is not a parameter name")
    return (target or None), key, parse_value(raw)


def parse_params(assignments: list[str]) -> dict[str, Any]:
    """``--set key=value`` items of a single component (``NAME.key`` is accepted too)."""
    return {key: value for _, key, value in map(parse_assignment, assignments)}


def parse_json_option(text: str, flag: str, example: str) -> Any:
    """The JSON value of ``flag``; one line with an example when it does not parse."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidParams(f"{flag} {text!r}: not JSON ({exc}); e.g. {example}") from None


# -- --json -----------------------------------------------------------------------------------------
def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


# -- options from pydantic fields -------------------------------------------------------------------
def flag_of(name: str) -> str:
    """The option of a settings field: ``val_fraction`` -> ``--val-fraction``."""
    return "--" + name.replace("_", "-")


def default_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def add_model_options(parser: argparse.ArgumentParser, model: Any, names: list[str] | None = None, *,
                      suffix: str = "", flags: dict[str, str] | None = None) -> None:
    """One option per field of the pydantic ``model`` (``names``: those only), named after
    the field (``flags`` renames some), its help the field's description, ``suffix`` and
    its default. The parsed value is ``None``
    when the option is not given (the settings' default, or a config file's, applies)."""
    from typing import get_args, get_origin

    for name in names or list(model.model_fields):
        field = model.model_fields[name]
        options = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = field.get_default(call_default_factory=True)
        words = f"{field.description}{suffix} (default: {default_text(default)})"
        flag = (flags or {}).get(name, flag_of(name))
        kwargs: dict[str, Any] = {"default": NOT_GIVEN, "dest": flag[2:].replace("-", "_"), "help": words}
        choices = get_args(field.annotation) if str(get_origin(field.annotation)) == "typing.Literal" else ()
        if choices:
            kwargs["choices"] = list(choices)
        elif field.annotation is float:
            kwargs.update(type=float, metavar=options.get("metavar", "F"))
        elif field.annotation is int:
            kwargs.update(type=int, metavar=options.get("metavar", "N"))
        else:
            kwargs["metavar"] = options.get("metavar", "VALUE")
        parser.add_argument(flag, **kwargs)


def given_settings(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """The fields of ``model`` that were given on the command line."""
    return {name: getattr(args, name) for name in model.model_fields
            if getattr(args, name, NOT_GIVEN) is not NOT_GIVEN}


# -- few-shot settings ------------------------------------------------------------------------------
SEARCH_EXAMPLE = '\'{"sigma": [2, 4], "open_size": [], "min_area": [64]}\''


def add_few_shot_options(parser: argparse.ArgumentParser, no_training_help: str) -> None:
    """--few-shot-objective, --few-shot-search, --no-few-shot-training (fit and benchmark)."""
    from pyimgano.pipeline.fewshot import FewShotSettings

    add_model_options(parser, FewShotSettings, ["objective"], flags={"objective": "--few-shot-objective"})
    parser.add_argument("--few-shot-search", metavar="JSON",
                        help=f"{FewShotSettings.model_fields['search'].description}, e.g. {SEARCH_EXAMPLE} "
                             "(default: docs/few-shot.md)")
    parser.add_argument("--no-few-shot-training", action="store_true", help=no_training_help)


def few_shot_given(args: argparse.Namespace) -> dict[str, Any]:
    """The few-shot settings given on the command line, as :class:`FewShotSettings` fields."""
    given: dict[str, Any] = {}
    if args.few_shot_objective is not NOT_GIVEN:
        given["objective"] = args.few_shot_objective
    if args.few_shot_search is not None:
        given["search"] = parse_json_option(args.few_shot_search, "--few-shot-search", SEARCH_EXAMPLE)
    if args.no_few_shot_training:
        given["train"] = False
    return given


# -- thresholds -------------------------------------------------------------------------------------
def fixed_threshold(text: str | None, flag: str) -> float | None:
    """A threshold a saved pipeline applies as it is: ``fixed:V`` or ``V`` (a finite number);
    a spec that needs data to fit (quantile, f1) is one line saying where it goes."""
    from pyimgano.thresholds import FixedThreshold, make_strategy

    if text is None:
        return None
    try:
        spec: Any = float(text)
    except ValueError:
        spec = text
    strategy = make_strategy(spec, flag)
    if not isinstance(strategy, FixedThreshold):
        raise InvalidParams(f"{flag} {text!r}: a saved pipeline applies a fixed threshold (V or fixed:V); "
                            f"{strategy.spec()} is fitted on validation images by pyimgano fit")
    return float(strategy.value)


# -- old spellings ----------------------------------------------------------------------------------
class _Deprecated(argparse.Action):
    """An old spelling: says so on stderr, and hands its value to the new option."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, target: str,
                 convert: Callable[[Any], Any] = lambda v: v, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new, self.target, self.convert = new, target, convert

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        value = self.convert(values)
        print(f"warning: {option_string} is deprecated and goes in the next release; use {self.new} "
              f"{value if value is not True else ''}".rstrip(), file=sys.stderr)
        pending = dict(getattr(namespace, "_deprecated", None) or {})
        if isinstance(value, list) and self.target in pending:  # a repeatable option: the values add up
            value = pending[self.target][2] + value
        pending[self.target] = (option_string, self.new, value)
        namespace._deprecated = pending


def add_deprecated(parser: argparse.ArgumentParser, old: str, new: str, target: str,
                   convert: Callable[[Any], Any] = lambda v: v, **kwargs: Any) -> None:
    """Accept ``old`` for one release: its value (``convert``-ed) goes to ``target`` (the
    dest of ``new``), with a deprecation line; giving both is a usage error."""
    parser.add_argument(old, action=_Deprecated, new=new, target=target, convert=convert,
                        dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def apply_deprecated(args: argparse.Namespace) -> None:
    """Move the values of old spellings to their options (after parsing)."""
    for target, (old, new, value) in (getattr(args, "_deprecated", None) or {}).items():
        if getattr(args, target, None) not in (None, False, []):
            raise InvalidParams(f"{old} and {new} both set {target.replace('_', ' ')}; give {new} only")
        setattr(args, target, value)
    if hasattr(args, "_deprecated"):
        del args._deprecated
