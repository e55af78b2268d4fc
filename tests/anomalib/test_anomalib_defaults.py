"""The plugin's defaults are anomalib's: every params model against the installed anomalib's
constructor signatures and ``trainer_arguments``, and against the budgets anomalib publishes.

A future anomalib that changes a default, adds a constructor argument or renames one fails
here, naming the model and the argument.
"""

from __future__ import annotations

import enum
import inspect
from pathlib import PurePath
from typing import Any

import pytest

from pyimgano_anomalib.catalog import MODELS, ModelEntry

pytestmark = [pytest.mark.torch, pytest.mark.anomalib]

# Constructor arguments of anomalib's modules that the plugin wires itself.
FRAMEWORK = {"self", "pre_processor", "post_processor", "evaluator", "visualizer", "kwargs"}
# Arguments a params model does not expose, and why (anything else must be a field).
NOT_EXPOSED: dict[tuple[str, str], str] = {
    ("patchcore", "precision"): "scores are computed in float32",
    ("cflow", "decoder"): "anomalib has one decoder, freia-cflow",
    ("csflow", "num_channels"): "images reach the model as RGB (fixed 3)",
    ("supersimplenet", "supervised"): "set by fit: True when it is given labelled anomalies (docs/few-shot.md)",
    ("fre", "input_dim"): "computed from the backbone layer, the image size and the pooling",
    ("draem", "beta"): "split into beta_min / beta_max",
    ("glass", "input_shape"): "set from image_size",
}
# params field -> anomalib argument, where the names differ.
RENAMED = {"layers": "layer"}
# Our None means "anomalib's value" for these fields (the argument is then not passed).
NONE_MEANS_ANOMALIB = {"layers"}


def _anomalib_class(entry: ModelEntry) -> type:
    from pyimgano_anomalib.adapter import anomalib_class

    return anomalib_class(entry.anomalib_class)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def _arg_of(field: str, signature: inspect.Signature) -> str | None:
    if field in signature.parameters:
        return field
    renamed = RENAMED.get(field)
    return renamed if renamed in signature.parameters else None


@pytest.mark.parametrize("entry", MODELS, ids=[e.name for e in MODELS])
def test_defaults_are_anomalibs_or_say_why_not(entry):
    signature = inspect.signature(_anomalib_class(entry).__init__)
    problems = []
    for name, field in entry.params.model_fields.items():
        arg = _arg_of(name, signature)
        if arg is None:
            continue
        theirs = _plain(signature.parameters[arg].default)
        ours = _plain(field.default)
        why = (field.json_schema_extra or {}).get("differs_from_anomalib")
        same = ours == theirs or (ours is None and name in NONE_MEANS_ANOMALIB)
        if same and why:
            problems.append(f"{name}: says it differs from anomalib ({why}) but both default to {ours!r}")
        elif not same and not why:
            problems.append(f"{name}: default {ours!r}, anomalib's {arg} defaults to {theirs!r}, and the field "
                            "does not say why (unlike_anomalib)")
        elif not same and why not in (field.description or ""):
            problems.append(f"{name}: the reason it differs from anomalib is not in its description")
    assert not problems, f"anomalib:{entry.name} ({entry.anomalib_class}): " + "; ".join(problems)


@pytest.mark.parametrize("entry", MODELS, ids=[e.name for e in MODELS])
def test_every_anomalib_argument_is_exposed_or_declared(entry):
    signature = inspect.signature(_anomalib_class(entry).__init__)
    fields = set(entry.params.model_fields) | {RENAMED.get(f, f) for f in entry.params.model_fields}
    missing = [
        arg for arg in signature.parameters
        if arg not in FRAMEWORK and arg not in fields and (entry.name, arg) not in NOT_EXPOSED
    ]
    assert not missing, (f"anomalib's {entry.anomalib_class} takes {missing}, which anomalib:{entry.name}'s params "
                         "model neither exposes nor declares in NOT_EXPOSED")
    stale = [arg for (model, arg) in NOT_EXPOSED if model == entry.name and arg not in signature.parameters]
    assert not stale, f"NOT_EXPOSED names {stale}, which {entry.anomalib_class} no longer takes"


@pytest.mark.parametrize("entry", MODELS, ids=[e.name for e in MODELS])
def test_passed_through_names_exist_on_both_sides(entry):
    signature = inspect.signature(_anomalib_class(entry).__init__)
    for name in entry.passes:
        assert name in entry.params.model_fields, f"anomalib:{entry.name} passes {name!r}, not a params field"
        assert name in signature.parameters, f"anomalib:{entry.name} passes {name!r}, which {entry.anomalib_class} lacks"
    for name in entry.fixed:
        assert name in signature.parameters, f"anomalib:{entry.name} fixes {name!r}, which {entry.anomalib_class} lacks"


@pytest.mark.parametrize("entry", MODELS, ids=[e.name for e in MODELS])
def test_budget_is_anomalibs(entry):
    # the budget is written once, as the params model's max_epochs (with where anomalib publishes it)
    assert entry.budget.max_epochs == entry.params.model_fields["max_epochs"].default
    assert entry.budget.source, f"anomalib:{entry.name}: max_epochs does not say where anomalib publishes it"
    try:
        fixed = _anomalib_class(entry).trainer_arguments.fget(None)
    except AttributeError:  # computed from the instance (SuperSimpleNet's gradient clipping)
        return
    if "max_epochs" in fixed:
        assert entry.budget.max_epochs == fixed["max_epochs"], (
            f"anomalib:{entry.name}: anomalib's trainer_arguments fix max_epochs={fixed['max_epochs']}"
        )


def test_model_trainer_arguments_reach_the_trainer(tmp_path):
    """anomalib's own trainer arguments (gradient clipping...) are kept; the budget is ours."""
    from pyimgano_anomalib import training
    from pyimgano_anomalib.params import CsflowParams

    class Module:
        trainer_arguments = {"gradient_clip_val": 1, "num_sanity_val_steps": 0, "max_epochs": 1, "devices": 1}

    args = training.trainer_arguments(Module(), CsflowParams(max_epochs=7, max_steps=3), tmp_path)
    assert args["gradient_clip_val"] == 1 and args["max_epochs"] == 7 and args["max_steps"] == 3
    assert args["accelerator"] == "cpu" and args["limit_val_batches"] == 0


def test_factories_name_their_entry():
    import importlib

    for entry in MODELS:
        module, _, attr = entry.factory.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        assert cls.model_name == entry.name, f"{entry.factory} is the detector of {cls.model_name!r}, not {entry.name!r}"


def test_docs_list_every_anomalib_model():
    """Each of anomalib's models is either wrapped (a row of docs/anomalib.md's table) or
    listed there with what it needs, so a model a new anomalib adds is noticed."""
    import anomalib.models

    from pyimgano_testutils import REPO_ROOT

    text = (REPO_ROOT / "docs" / "anomalib.md").read_text()
    wrapped = {entry.anomalib_class for entry in MODELS}
    for entry in MODELS:
        assert f"| `{entry.name}` | `{entry.anomalib_class}` |" in text, f"docs/anomalib.md has no row for {entry.name}"
    classes = [n for n in anomalib.models.__all__ if isinstance(getattr(anomalib.models, n), type)]
    unlisted = [n for n in classes if n not in wrapped and f"`{n}`" not in text]
    assert not unlisted, f"anomalib models neither wrapped nor listed in docs/anomalib.md: {unlisted}"
