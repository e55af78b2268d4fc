"""Check an installed plugin, or one of its components, with every check that applies.

``check_plugin("example")`` checks that the plugin loaded, that its registration module
stays light, and runs the detector, data set, metric and post-processor checks on each
component it registers; ``check_plugin("example:mad")`` checks that one component.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pyimgano.errors import ComponentNotFound, InvalidParams
from pyimgano.testing._core import CheckResult, describe
from pyimgano.testing.components import (
    DATASET_CHECKS,
    METRIC_CHECKS,
    POSTPROCESSOR_CHECKS,
    check_dataset,
    check_metric,
    check_postprocessor,
)
from pyimgano.testing.detectors import DETECTOR_CHECKS, check_detector

# Modules a registration module must not import (their import alone takes seconds).
HEAVY_MODULES = ("torch", "torchvision", "timm", "faiss", "anomalib", "lightning", "tensorflow", "jax", "cv2")
_CHECKS_BY_KIND = {
    "detector": DETECTOR_CHECKS,
    "dataset": DATASET_CHECKS,
    "metric": METRIC_CHECKS,
    "postprocessor": POSTPROCESSOR_CHECKS,
}


def _components(target: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(plugin name when a whole plugin is meant, [(kind, qualified name), ...])."""
    from pyimgano.plugins import KINDS, get_registry

    registry = get_registry()
    if ":" in target:
        found = [(kind, target) for kind in KINDS if target in registry.components(kind)]
        if not found:
            plugin = target.split(":", 1)[0]
            hint = registry._why_missing(plugin)
            raise ComponentNotFound(f"no component named {target!r}{hint}")
        return None, found
    if any(record.name == target for record in registry.plugins):
        record = registry.plugin(target)
        return target, [(kind, f"{target}:{spec.name}") for kind in KINDS for spec in record.components[kind]]
    found = []
    for kind in KINDS:
        try:
            found.append((kind, registry.qualified_name(kind, target)))
        except ComponentNotFound:
            continue
    if not found:
        installed = ", ".join(p.name for p in registry.plugins)
        raise ComponentNotFound(f"{target!r} is neither a plugin ({installed}) nor a component name")
    return None, found


def _plugin_checks(plugin: str) -> list[CheckResult]:
    from pyimgano.plugins import get_registry

    record = get_registry().plugin(plugin)
    start = time.perf_counter()
    if record.status != "ok":
        loads = CheckResult(plugin, "check_plugin_loads", "failed",
                            f"check_plugin_loads: plugin {record.provider()} is {record.status}: {record.error}")
        return [loads]
    n = sum(len(v) for v in record.components.values())
    results = [CheckResult(plugin, "check_plugin_loads", "passed",
                           f"{record.provider()} registers {n} component(s)", time.perf_counter() - start)]
    results.append(check_registration_module_is_light(plugin, record.module))
    return results


def check_registration_module_is_light(plugin: str, module: str) -> CheckResult:
    """Import the plugin's registration module in a fresh interpreter; it must not pull in
    torch, faiss, anomalib or the like (``pyimgano list-plugins`` imports every one)."""
    start = time.perf_counter()
    module_name = module.split(":", 1)[0]
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module_name!r})\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY_MODULES)!r} if m in sys.modules)))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - start
    name = "check_registration_module_is_light"
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return CheckResult(plugin, name, "failed", f"{name}: importing {module_name} failed: {tail[0]}", seconds)
    heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    if heavy:
        return CheckResult(plugin, name, "failed", f"{name}: importing {module_name} imports {heavy}; "
                           "name heavy code in spec factories ('module:attr') instead", seconds)
    return CheckResult(plugin, name, "passed", "", seconds)


def _for_component(params: Mapping[str, Any], kind: str, qualified: str, whole_plugin: bool) -> dict[str, Any]:
    if not whole_plugin:
        return dict(params)
    from pyimgano.plugins import get_registry

    spec, _ = get_registry().resolve(kind, qualified)
    return {k: v for k, v in params.items() if k in spec.params.model_fields}


def check_plugin(
    target: str,
    *,
    params: Mapping[str, Any] | None = None,
    component_params: Mapping[str, Mapping[str, Any]] | None = None,
    known_failures: Mapping[str, str] | None = None,
    root: Any = None,
    category: str | None = None,
    checks: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Run the kit against a plugin (every component) or one component (``plugin:name``).

    ``params`` go to detectors, metrics and post-processors (for a whole plugin, only to
    those whose params model has the field); ``component_params`` maps a component's
    qualified or bare name to parameters for it alone; ``known_failures`` is ``{check: reason}``;
    ``root``/``category`` locate data sets; ``checks`` keeps only the named checks.
    """
    params = dict(params or {})
    known = dict(known_failures or {})
    plugin, components = _components(target)
    names_checked = {q for _, q in components} | {q.split(":", 1)[1] for _, q in components}
    stray = sorted(set(component_params or {}) - names_checked)
    if stray:
        raise InvalidParams(f"parameters for {stray}, which {target!r} does not include; "
                         f"components: {sorted(q for _, q in components)}")
    every = {c.name for group in _CHECKS_BY_KIND.values() for c in group}
    every |= {"check_plugin_loads", "check_registration_module_is_light"}
    unknown = sorted((set(known) | set(checks or ())) - every)
    if unknown:
        raise InvalidParams(f"unknown check(s) {unknown}; see pyimgano.testing.check_names()")
    wanted = None if checks is None else set(checks)
    results = _plugin_checks(plugin) if plugin is not None else []
    for kind, qualified in components:
        names = {c.name for c in _CHECKS_BY_KIND[kind]}
        own_known = {k: v for k, v in known.items() if k in names}
        own_params = _for_component(params, kind, qualified, plugin is not None)
        for name, values in (component_params or {}).items():
            if name in (qualified, qualified.split(":", 1)[1]):
                own_params.update(values)
        own_checks = None if wanted is None else wanted & names
        if own_checks is not None and not own_checks:
            continue
        common = {"known_failures": own_known, "checks": own_checks}
        try:
            if kind == "detector":
                results.extend(check_detector(qualified, params=own_params, **common))
            elif kind == "dataset":
                results.extend(check_dataset(qualified, root=root, category=category, options=own_params, **common))
            elif kind == "metric":
                results.extend(check_metric(qualified, params=own_params, **common))
            else:
                results.extend(check_postprocessor(qualified, params=own_params, **common))
        except Exception as exc:
            if plugin is None:
                raise
            results.append(CheckResult(qualified, "setup", "failed", f"setup: {describe(exc)}"))
    if wanted is not None:
        results = [r for r in results if r.check in wanted or r.check == "setup"]
    return results


def summarize(results: Iterable[CheckResult]) -> dict[str, int]:
    """Counts per status."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
