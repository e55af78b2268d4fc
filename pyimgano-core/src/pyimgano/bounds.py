"""Every number a user hands a component is bounded by its meaning.

The rule (docs/reliability.md, "Round 3"): each ``int`` or ``float`` of a parameter model
(a component's ``params``, the pipeline settings, the benchmark configuration, the few-shot
search) has a lower and an upper bound that follow from what it means: a kernel wider than
any image, a seed beyond what the generators take, a timeout of more than a week say
nothing a user could want, and an unbounded value turns a typo into hours of work, an
allocation of the whole machine or an ``OverflowError``. A float that may be any real (a
fixed threshold on the score scale) is :data:`Finite` instead. pydantic checks the bounds
when the model is validated, which is before any work starts.

:func:`unbounded_numbers` finds the fields that break the rule; the test suite runs it over
every parameter model of every installed plugin and the core's settings, so a new field
without bounds fails there, whoever adds it.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A float whose meaning is any real number: finite is its only bound."""

SEED_MAX = 2**32 - 1
"""The largest seed: NumPy's legacy generator and every worker's take seeds below 2**32."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A seed of the random generators."""

TIMEOUT_MAX_S = 7 * 24 * 3600.0
"""The longest timeout in seconds (a week): beyond it, none is meant (use 0 or None)."""


VALIDATED_BOUND = "validated_bound"
"""``json_schema_extra`` key of a field whose bound a validator checks against a limit known
only at run time (the image pixel limit): its value says which, for the docs and the test."""


def unbounded_numbers(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` (nested models and list items included, as ``a.b[]``) holding
    an ``int`` or ``float`` without both a lower and an upper bound (a :data:`Finite` float
    counts as bounded)."""
    found: list[str] = []
    _walk_model(model, "", found, set())
    return found


def _walk_model(model: type[BaseModel], prefix: str, found: list[str], seen: set[type]) -> None:
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get(VALIDATED_BOUND):
            continue  # a validator of the model bounds it (a limit known at run time), and says which
        _walk(info.annotation, list(info.metadata), f"{prefix}{name}", found, seen | {model})


def _walk(kind: Any, metadata: list[Any], path: str, found: list[str], seen: set[type]) -> None:
    origin = typing.get_origin(kind)
    if origin is Annotated:
        inner, *extra = typing.get_args(kind)
        _walk(inner, metadata + extra, path, found, seen)
    elif origin in (typing.Union, types.UnionType):
        for member in typing.get_args(kind):
            _walk(member, metadata, path, found, seen)
    elif origin in (list, tuple, set, frozenset, dict):
        for member in typing.get_args(kind):
            if member is not Ellipsis:
                _walk(member, [], f"{path}[]", found, seen)
    elif isinstance(kind, type) and issubclass(kind, BaseModel):
        if kind not in seen:
            _walk_model(kind, f"{path}.", found, seen)
    elif kind in (int, float) and not _bounded(kind, metadata):
        found.append(path)


def _bounded(kind: type, metadata: list[Any]) -> bool:
    flat: list[Any] = []
    for item in metadata:
        flat.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    low = high = False
    for item in flat:  # pydantic's constraint objects (annotated_types Ge, Le, Interval...) by their attributes
        low = low or getattr(item, "ge", None) is not None or getattr(item, "gt", None) is not None
        high = high or getattr(item, "le", None) is not None or getattr(item, "lt", None) is not None
        if kind is float and getattr(item, "allow_inf_nan", None) is False:
            return True
    return low and high
