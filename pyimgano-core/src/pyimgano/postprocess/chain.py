"""``PostProcessing``: an ordered chain of post-processing steps from plain config; ``tune_postprocessing``.

Config is JSON-friendly: a list (or ``{"steps": [...]}``, or a JSON string of either) of
``{"name": "gaussian", "sigma": 4}`` or ``{"name": "gaussian", "params": {"sigma": 4}}``.
Names are resolved through the plugin registry, so third-party post-processors work too.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pyimgano.errors import ComponentNotFound, InvalidParams, NameConflict, PluginError
from pyimgano.metrics.params import DEFAULT_FPR_LIMIT

MAX_TRIALS = 1000


def _step_list(config: Any) -> list[dict[str, Any]]:
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise InvalidParams(f"post-processing config is not valid JSON: {exc}") from None
    if isinstance(config, dict):
        if set(config) != {"steps"}:
            raise InvalidParams(f"a post-processing config dict must have exactly one key 'steps'; got {sorted(config)}")
        config = config["steps"]
    if not isinstance(config, (list, tuple)):
        raise InvalidParams(f"a post-processing config must be a list of steps; got {type(config).__name__}")
    steps = []
    for i, item in enumerate(config):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidParams(f"post-processing step {i} must be a dict with a 'name'; got {item!r}")
        params = dict(item.get("params", {}))
        params.update({k: v for k, v in item.items() if k not in ("name", "params", "state")})
        steps.append({"name": item["name"], "params": params, "state": item.get("state")})
    return steps


class PostProcessing:
    """Post-processing steps applied in order to N x H x W maps (or lists of H x W maps)."""

    def __init__(self, steps: list[tuple[str, Any]]) -> None:
        self.steps = list(steps)

    @classmethod
    def from_config(cls, config: Any) -> PostProcessing:
        """Build from a list of step dicts, ``{"steps": [...]}`` or a JSON string of either."""
        from pyimgano.plugins import get_registry

        registry = get_registry()
        steps = []
        for i, item in enumerate(_step_list(config)):
            try:
                step = registry.create("postprocessor", item["name"], **item["params"])
            except (InvalidParams, ComponentNotFound, NameConflict, PluginError) as exc:
                raise type(exc)(f"post-processing step {i} ({item['name']}): {exc}") from None
            if item["state"]:
                checked = getattr(step, "checked_state", None)
                try:
                    step.state = checked(item["state"]) if checked else {k: float(v) for k, v in item["state"].items()}
                except InvalidParams as exc:
                    raise InvalidParams(f"post-processing step {i} ({item['name']}): {exc}") from None
            steps.append((item["name"], step))
        return cls(steps)

    def to_config(self, *, include_state: bool = False) -> list[dict[str, Any]]:
        """The plain config that rebuilds this chain (with fitted statistics if asked)."""
        out = []
        for name, step in self.steps:
            params = step.params.model_dump() if isinstance(getattr(step, "params", None), BaseModel) else {}
            item: dict[str, Any] = {"name": name, **params}
            if include_state and getattr(step, "state", None):
                item["state"] = dict(step.state)
            out.append(item)
        return out

    @property
    def needs_fit(self) -> bool:
        return any(getattr(step, "needs_fit", False) for _, step in self.steps)

    def fit(self, maps: Any) -> PostProcessing:
        """Fit the statistics of each step on training/calibration maps (never test maps)."""
        last = max((i for i, (_, s) in enumerate(self.steps) if getattr(s, "needs_fit", False)), default=-1)
        for i, (_, step) in enumerate(self.steps[: last + 1]):
            if hasattr(step, "fit"):
                step.fit(maps)
            if i < last:  # what the next fitted step learns from (after the last one: nothing)
                maps = step(maps)
        return self

    def __call__(self, maps: Any) -> Any:
        for _, step in self.steps:
            maps = step(maps)
        return maps

    transform = __call__

    def __repr__(self) -> str:
        return f"PostProcessing({self.to_config()!r})"


@dataclass
class TuneResult:
    """What ``tune_postprocessing`` chose: the config, the fitted chain, its score and the
    pixel F1-optimal threshold on the processed maps (anomalous where score >= threshold)."""

    config: list[dict[str, Any]]
    postprocessing: PostProcessing
    score: float
    objective: str
    threshold: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.postprocessing.to_config(include_state=True),
            "score": self.score,
            "objective": self.objective,
            "threshold": self.threshold,
            "trials": self.trials,
        }


def expand_search_space(search_space: Any) -> list[list[dict[str, Any]]]:
    """Every post-processing config in the grid: a list-valued parameter is a set of candidates,
    and a step marked ``"optional": true`` is also tried left out (first: among equal scores
    the simpler config wins). Configs that come out the same are listed once."""
    steps = _step_list(search_space)
    axes: list[tuple[int, str | None, list[Any]]] = []
    for i, step in enumerate(steps):
        optional = step["params"].pop("optional", False)
        if not isinstance(optional, bool):
            raise InvalidParams(f"search space step {i} ({step['name']}): optional must be true or false, "
                                f"got {optional!r}")
        if optional:
            axes.append((i, None, [False, True]))  # None: the step's presence
        for key, value in step["params"].items():
            if isinstance(value, (list, tuple)):
                if not value:
                    raise InvalidParams(f"search space step {i} ({step['name']}): {key} has no candidates")
                axes.append((i, key, list(value)))
    n = 1
    for _, _, values in axes:
        n *= len(values)
    if n > MAX_TRIALS:
        raise InvalidParams(f"the search space has {n} combinations; at most {MAX_TRIALS} are allowed")
    configs: dict[str, list[dict[str, Any]]] = {}
    for combo in itertools.product(*(values for _, _, values in axes)):
        config: list[dict[str, Any] | None] = [{"name": s["name"], **s["params"]} for s in steps]
        for (i, key, _), value in zip(axes, combo):
            if key is None:
                if not value:
                    config[i] = None
            elif config[i] is not None:
                config[i][key] = value
        kept = [step for step in config if step is not None]
        configs.setdefault(json.dumps(kept, sort_keys=True, default=str), kept)
    return list(configs.values())


def search_postprocessing(
    configs: list[list[dict[str, Any]]],
    maps: Any,
    masks: Any,
    objective: str,
    *,
    fit_maps: Any,
    fpr_limit: float = DEFAULT_FPR_LIMIT,
) -> tuple[tuple[float, list[dict[str, Any]], PostProcessing, Any], list[tuple[list[dict[str, Any]], float]]]:
    """Score each post-processing config on labelled maps: ``(best, scored)``, where ``best`` is
    ``(score, config, fitted chain, its output on maps)`` (the first among equal scores) and
    ``scored`` every ``(config, score)`` in order. Steps that need statistics are fitted on
    ``fit_maps`` (normal maps; never the labelled ones); ``objective``: ``"aupro"`` (at
    ``fpr_limit``) or ``"pixel_f1"`` (pixel F1-max)."""
    from pyimgano.metrics import aupro, pixel_f1_max

    scored: list[tuple[list[dict[str, Any]], float]] = []
    best: tuple[float, list[dict[str, Any]], PostProcessing, Any] | None = None
    for config in configs:
        chain = PostProcessing.from_config(config)
        if chain.needs_fit:
            if fit_maps is None:
                raise InvalidParams(
                    f"post-processing {config} needs normalisation statistics: pass fit_maps= (maps of "
                    "normal training or calibration images); the labelled maps are not used for that"
                )
            chain.fit(fit_maps)
        processed = chain(maps)
        if objective == "aupro":
            score = float(aupro(masks, processed, fpr_limit=fpr_limit))
        else:
            score = float(pixel_f1_max(masks, processed)[0])
        scored.append((config, score))
        if best is None or score > best[0]:
            best = (score, config, chain, processed)
    if best is None:
        raise InvalidParams("the post-processing search has no candidates")
    return best, scored


def tune_postprocessing(
    maps: Any,
    masks: Any,
    search_space: Any,
    objective: str = "aupro",
    *,
    fit_maps: Any = None,
    fpr_limit: float = DEFAULT_FPR_LIMIT,
) -> TuneResult:
    """Grid-search post-processing parameters on a few labelled maps.

    ``maps``/``masks``: the labelled images used to choose; ``search_space``: a post-processing
    config whose list-valued parameters are candidates, e.g.
    ``[{"name": "gaussian", "sigma": [2, 4, 8], "optional": true}, {"name": "minmax"}]`` (an
    optional step is also tried left out); ``objective``:
    ``"aupro"`` (at ``fpr_limit``) or ``"pixel_f1"`` (pixel F1-max). Steps that need
    statistics are fitted on ``fit_maps`` (maps of normal training/calibration images),
    which must be given explicitly: the labelled maps are never used for normalisation.
    Returns the best config (first among equal scores), its score, the pixel F1-optimal
    threshold on its output and every trial.
    """
    from pyimgano.metrics import pixel_f1_max

    if objective not in ("aupro", "pixel_f1"):
        raise InvalidParams(f"objective must be 'aupro' or 'pixel_f1'; got {objective!r}")
    (score, config, chain, processed), scored = search_postprocessing(
        expand_search_space(search_space), maps, masks, objective, fit_maps=fit_maps, fpr_limit=fpr_limit)
    trials = [{"config": c, "score": s} for c, s in scored]
    threshold = pixel_f1_max(masks, processed)[1]
    return TuneResult(config, chain, score, objective, threshold, trials)
