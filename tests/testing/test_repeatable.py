"""The conformance run is repeatable: the same check gives the same outcome, with the same
figures, in two fresh processes, run alone or after others (docs/plugins.md, "Repeatable")."""

from __future__ import annotations

import json
import sys

import pytest

from pyimgano.testing import check_detector
from pyimgano_testutils import run_cli


def _outcomes(*args: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    result = run_cli("check-plugin", *args, "--json", timeout=900)
    assert result.returncode in (0, 1), result.stderr
    rows = json.loads(result.stdout)["results"]
    return {(r["component"], r["check"]): (r["status"], r.get("message")) for r in rows}


def test_make_seeds_before_and_after_building(example_plugin):
    """Every detector the kit builds starts from seeded generators, and is handed back with
    them seeded: two checks that draw from them draw the same numbers."""
    import numpy as np

    from pyimgano.testing.detectors import DetectorTarget

    target = DetectorTarget("example:mad", lambda **p: np.random.random(3))
    first, drawn_after_first = target.make(), np.random.random()
    second, drawn_after_second = target.make(), np.random.random()
    assert np.array_equal(first, second) and drawn_after_first == drawn_after_second


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("component", ["anomalib:dsr", "faiss:patchcore"])
def test_a_check_run_twice_in_fresh_processes_gives_the_same_outcome(component):
    """A model with random weights (DSR without its pretrained file) and one with a random
    projection (PatchCore's coreset): outcome and message (its figures) alike, twice."""
    checks = ("--check", "check_defect_scores_higher", "--check", "check_maps_locate_defect")
    first = _outcomes(component, *checks)
    assert first == _outcomes(component, *checks)
    assert {key[1] for key in first} == {"check_defect_scores_higher", "check_maps_locate_defect"}


@pytest.mark.torch
def test_the_first_check_alone_sees_what_it_sees_after_others():
    """A check run alone (its detector's build imports torch) and after another check (torch
    imported already) fit the same detector."""
    params = {"backbone": "efficientnet_lite0", "image_size": 64, "progress": False, "pretrained": False}
    code = ("import json, sys; from pyimgano.testing import check_detector; "
            f"r = check_detector('faiss:knn', params={params!r}, checks=sys.argv[1:]); "
            "print(json.dumps([(x.check, x.status, x.message) for x in r]))")
    import subprocess

    def run(*checks: str) -> list:
        out = subprocess.run([sys.executable, "-c", code, *checks], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.splitlines()[-1])

    alone = run("check_defect_scores_higher")
    after = run("check_use_before_fit_raises", "check_defect_scores_higher")
    assert alone == after[1:]
    assert check_detector  # the kit's public entry point is what the processes above call
