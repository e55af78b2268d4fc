"""Create components by name: ``create_detector``, ``load_dataset``, ``get_metric``..."""

from __future__ import annotations

from typing import Any

from pyimgano.plugins import get_registry


def create_detector(name: str, /, **params: Any) -> Any:
    """Build a detector by qualified (``faiss:patchcore``) or bare name.

    Parameters are validated against the spec's params model before the plugin's heavy
    modules are imported.
    """
    registry = get_registry()
    spec, record = registry.resolve("detector", name)
    detector = registry.create("detector", name, **params)
    try:
        detector.component = f"{record.name}:{spec.name}"
        detector.plugin = record.name
    except AttributeError:  # a factory returning an object with read-only attributes
        pass
    return detector


def load_dataset(name: str, /, root: Any = None, category: Any = None, **options: Any) -> Any:
    """Open a data set by name; returns an object with ``.info``, ``.train``, ``.test``."""
    registry = get_registry()
    spec, record = registry.resolve("dataset", name)
    validated = registry.validate_params("dataset", name, options)
    factory = registry.load_factory("dataset", name)
    kwargs = {key: getattr(validated, key) for key in type(validated).model_fields}
    return factory(root=root, category=category, **kwargs)


def list_detectors() -> list[str]:
    return get_registry().names("detector")


def list_datasets() -> list[str]:
    return get_registry().names("dataset")


def list_metrics() -> list[str]:
    return get_registry().names("metric")


def list_postprocessors() -> list[str]:
    return get_registry().names("postprocessor")


def get_metric(name: str) -> Any:
    """The metric function registered under ``name``."""
    return get_registry().load_factory("metric", name)


def create_postprocessor(name: str, /, **params: Any) -> Any:
    return get_registry().create("postprocessor", name, **params)
