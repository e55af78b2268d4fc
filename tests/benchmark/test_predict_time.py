"""The benchmark's predict_s counts what a user waits for (decoding included); fit's choices are recorded."""

from __future__ import annotations

import time

import numpy as np

from pyimgano.benchmark import job as job_module
from pyimgano.benchmark import scoring
from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry, expand_jobs
from pyimgano.detector import fitted_attributes


def test_predict_s_includes_loading_the_test_images(fake_plugin, toy_root, monkeypatch):
    config = BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean")],
                             datasets=[DatasetEntry(name="toy", root=str(toy_root))], overlays=0)
    spec = expand_jobs(config)[0]
    slow_decode = 0.05
    loaded = []
    real_load = scoring.load_pair

    def slow_load(dataset, sample, image_size):
        loaded.append(sample)
        time.sleep(slow_decode)
        return real_load(dataset, sample, image_size)

    monkeypatch.setattr(scoring, "load_pair", slow_load)  # the test split is scored in scoring
    outcome = job_module.run_job(spec)
    run, extra = outcome["run"], outcome["extra"]
    assert run["status"] == "ok", run["error"]
    n_test = run["n_test"]
    assert extra["load_test_s"] >= n_test * slow_decode
    assert run["timing"]["predict_s"] >= extra["load_test_s"]
    assert run["timing"]["images_per_s"] <= 1 / slow_decode


def test_what_fit_chose_is_recorded_with_the_job():
    from pyimgano import Detector

    class Chooser(Detector):
        def _fit(self, images):
            self.input_size_, self.grid_, self.memory_bank_ = 512, (52, 78), object()

    chooser = Chooser()
    chooser.fit([np.zeros((8, 8, 3), np.uint8)])
    assert fitted_attributes(chooser) == {"is_fitted_": True, "input_size_": 512, "grid_": [52, 78]}
