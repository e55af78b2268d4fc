"""The conformance kit on pyimgano's own torch detectors (faiss and anomalib plugins).

By default the cheap ones run: every faiss detector and the anomalib models that do not
train (or train for two steps quickly), each at the tiny budget of its spec's
``check_params`` plus the offline backbone. ``PYIMGANO_CHECK_ALL_BUILTINS=1`` runs the kit
on every registered built-in detector. Select one with e.g.
``pytest tests/testing/test_builtin_detectors.py -m slow -k "faiss:patchcore and save_load"``.
"""

from __future__ import annotations

import pytest

from pyimgano.errors import env_flag
from pyimgano.plugins import Registry
from pyimgano.testing import detector_target, parametrize_with_checks

BUILTIN_PLUGINS = ("faiss", "anomalib")
FAST = {"anomalib": {"patchcore", "padim"}}
# Known, documented deviations of built-in detectors: {qualified name: {check: reason}}.
KNOWN_FAILURES: dict[str, dict[str, str]] = {}
SMALL = {"backbone": "efficientnet_lite0", "image_size": 64}


def _builtin_targets() -> list:
    run_all = env_flag("PYIMGANO_CHECK_ALL_BUILTINS")
    registry = Registry().discover()
    targets = []
    for qualified in registry.names("detector"):
        plugin, name = qualified.split(":", 1)
        if plugin not in BUILTIN_PLUGINS or not (run_all or plugin not in FAST or name in FAST[plugin]):
            continue
        spec, _ = registry.resolve("detector", qualified)
        fields = spec.params.model_fields
        small = {k: v for k, v in SMALL.items() if k in fields and k not in spec.capabilities.check_params}
        targets.append(detector_target(qualified, params=small, known_failures=KNOWN_FAILURES.get(qualified)))
    return targets


TARGETS = _builtin_targets()


@pytest.mark.slow
@pytest.mark.torch
@(parametrize_with_checks(TARGETS) if TARGETS else pytest.mark.skip(reason="no built-in detector is registered"))
def test_builtin_detector_conforms(component, check):
    check(component)
