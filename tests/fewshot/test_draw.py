"""The draw of the K shots: seeded, spread over defect types, nested in K, clear when impossible."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from pyimgano.errors import InvalidParams
from pyimgano.pipeline.fewshot import draw_shots, shot_order


@dataclass
class Sample:
    image_path: str
    label: int
    defect_type: str = ""


def samples(kinds: dict[str, int], good: int = 5) -> list[Sample]:
    out = [Sample(f"good/{i:02d}.png", 0, "good") for i in range(good)]
    for kind, n in kinds.items():
        out += [Sample(f"{kind}/{i:02d}.png", 1, kind) for i in range(n)]
    return out


def paths(items: list[Sample], idx: list[int]) -> list[str]:
    return [items[i].image_path for i in idx]


def test_shots_spread_over_defect_types_and_grow_with_k():
    items = samples({"scratch": 4, "stain": 2, "hole": 3})
    for seed in range(10):
        order = shot_order(items, seed)
        assert sorted(order) == [i for i, s in enumerate(items) if s.label == 1]  # every defect, once
        first = [items[i].defect_type for i in order[:3]]
        assert len(set(first)) == 3  # three shots: one per type
        assert paths(items, draw_shots(items, 2, seed)) == paths(items, draw_shots(items, 5, seed))[:2]


def test_the_draw_follows_the_seed_not_the_listing_order():
    items = samples({"scratch": 4, "stain": 4})
    draws = {tuple(paths(items, draw_shots(items, 2, seed))) for seed in range(6)}
    assert len(draws) > 1  # the seed changes the draw
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    for seed in range(4):
        assert paths(items, draw_shots(items, 3, seed)) == paths(shuffled, draw_shots(shuffled, 3, seed))


def test_k_zero_draws_nothing_and_impossible_draws_name_both_counts():
    items = samples({"scratch": 3})
    assert draw_shots(items, 0, 0) == []
    with pytest.raises(InvalidParams, match=r"few-shot 3: grid has 3 defective image\(s\), and 3 shot\(s\) would leave "
                                            r"0 to evaluate; K must be at most 2"):
        draw_shots(items, 3, 0, "grid")
    with pytest.raises(InvalidParams, match="few-shot 7: grid has 3 defective image"):
        draw_shots(items, 7, 0, "grid")
    with pytest.raises(InvalidParams, match="few-shot 1: clean has no defective images to draw shots from"):
        draw_shots(samples({}), 1, 0, "clean")
    with pytest.raises(InvalidParams, match="must be a whole number >= 0"):
        draw_shots(items, -1, 0)
