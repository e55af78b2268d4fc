"""No threshold or post-processing statistic depends on the test split.

The same benchmark job runs on two data sets that share their training images but not
their test split (images dropped, labels flipped); everything the pipeline fitted must be
bit-identical.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyimgano.benchmark import BenchmarkConfig, DatasetEntry, DetectorEntry
from pyimgano.benchmark.config import expand_jobs
from pyimgano.benchmark.job import run_job


def altered_copy(toy: Path, dest: Path) -> Path:
    """``toy`` with another test split: two images dropped, one good image relabelled
    defective (with an empty mask) and one defective image relabelled good."""
    shutil.copytree(toy, dest)
    test = dest / "alpha" / "test"
    (test / "good" / "000.png").unlink()
    (test / "spot" / "000.png").unlink()
    shutil.move(test / "good" / "001.png", test / "spot" / "901.png")
    size = Image.open(test / "spot" / "901.png").size
    Image.fromarray(np.zeros(size[::-1], np.uint8)).save(dest / "alpha" / "ground_truth" / "spot" / "901_mask.png")
    shutil.move(test / "spot" / "001.png", test / "good" / "902.png")
    return dest


def job_on(root: Path, detector: DetectorEntry, seed: int) -> dict:
    config = BenchmarkConfig(detectors=[detector], datasets=[DatasetEntry(name="toy", root=str(root),
                                                                          categories=["alpha"])],
                             seed=seed, overlays=0)
    (spec,) = expand_jobs(config)
    outcome = run_job(spec)
    assert outcome["run"]["status"] == "ok", outcome["run"]["error"]
    return outcome


@pytest.mark.parametrize("image_threshold", ["quantile:0.9", "fpr:0.2"])
def test_thresholds_and_statistics_ignore_the_test_split(plugin, toy, tmp_path, image_threshold):
    other = altered_copy(toy, tmp_path / "altered")
    detector = DetectorEntry(name="benchtest:mean", postprocess=[{"name": "gaussian", "sigma": 1},
                                                                 {"name": "standardize", "robust": True}],
                             image_threshold=image_threshold, pixel_threshold="quantile:0.999")
    for seed in (0, 3):
        a, b = job_on(toy, detector, seed), job_on(other, detector, seed)
        assert a["run"]["n_test"] == 7 and b["run"]["n_test"] == 5
        assert [r["label"] for r in a["scores"]] != [r["label"] for r in b["scores"]]
        fitted_a, fitted_b = a["extra"]["pipeline"], b["extra"]["pipeline"]
        assert fitted_a == fitted_b  # every statistic and threshold, as Python floats: bit for bit
        state = fitted_a["postprocess"][1]["state"]
        assert set(state) == {"offset", "scale"} and all(np.isfinite(v) for v in state.values())
        for key in ("image_threshold", "pixel_threshold"):
            assert a["run"]["deployed"][key] == b["run"]["deployed"][key] == fitted_a[key]["value"]
        # the promise (target, bound, n) and the calibration scores behind the p-values
        assert fitted_a["calibration"]["normal_scores"] and fitted_a["calibration"]["image_promise"]["n"] == 1
        for key in ("image_fpr_target", "image_fpr_upper", "n_calibration"):
            assert a["run"]["deployed"][key] == b["run"]["deployed"][key] is not None
        assert (a["run"]["n_train"], a["run"]["n_val"]) == (b["run"]["n_train"], b["run"]["n_val"]) == (9, 1)
