"""report.html's threshold explorer, in a real headless browser: the slider moves the figures."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, DatasetEntry, DetectorEntry
from pyimgano.benchmark.deployed import image_figures
from pyimgano.benchmark.runner import run_benchmark
from pyimgano_testutils import headless_chromium


def test_the_explorer_slider_shows_the_test_figures_at_each_threshold(fake_plugin, toy_root, tmp_path):
    cfg = BenchmarkConfig(detectors=[DetectorEntry(name="benchtest:mean", image_threshold="fpr:0.2")],
                          datasets=[DatasetEntry(name="toy", root=str(toy_root), categories=["alpha"])],
                          out=str(tmp_path), overlays=0)
    outcome = run_benchmark(cfg, console=Console(file=io.StringIO(), width=200))
    (record,) = outcome.records
    deployed = record["run"]["deployed"]
    assert deployed["image_fpr_target"] == 0.2 and deployed["n_calibration"] >= 1
    scores = [(row["score"], row["label"]) for row in record_scores(tmp_path, record)]
    page = tmp_path / "report.html"
    assert 'class="explorer"' in page.read_text()

    def expected(threshold):
        labels = [y for _, y in scores]
        return image_figures(labels, [s for s, _ in scores], threshold)

    with headless_chromium() as browser:
        browser.get(page.as_uri())
        block = browser.find_element("css selector", ".explorer")
        data = json.loads(block.find_element("css selector", "script").get_attribute("textContent"))

        def row(kind):
            return [c.text for c in block.find_elements("css selector", f"tr.{kind} td")]

        cal = row("cal")
        want = expected(deployed["image_threshold"])
        assert float(cal[1]) == pytest.approx(deployed["image_threshold"], rel=1e-5)
        assert float(cal[2]) == pytest.approx(want["image_fpr"], abs=5e-4)
        assert float(cal[5]) == pytest.approx(want["image_f1"], abs=5e-4)
        slider = block.find_element("css selector", "input[type=range]")
        seen = {}
        for value in ("0", "1000", "400"):  # the slider's ends and a point between
            browser.execute_script("arguments[0].value = arguments[1]; "
                                   "arguments[0].dispatchEvent(new Event('input'));", slider, value)
            now = seen[value] = row("now")
            threshold = data["lo"] + (data["hi"] - data["lo"]) * int(value) / 1000
            want = expected(threshold)
            assert float(now[1]) == pytest.approx(threshold, rel=1e-5)
            for cell, key in zip(now[2:], ("image_fpr", "image_recall", "image_precision", "image_f1")):
                assert (cell == "\u2013") if want[key] is None else float(cell) == pytest.approx(want[key], abs=5e-4)
        # below every score all good parts are rejected; above every score no defect is found
        assert (seen["0"][2], seen["0"][3], seen["1000"][2], seen["1000"][3]) == ("1.000", "1.000", "0.000", "0.000")
        block.find_element("css selector", "button.reset").click()
        assert row("now")[1:] == row("cal")[1:]
        assert browser.execute_script("return document.querySelectorAll('.explorer .mark.cal')[0].style.left") != ""


def record_scores(out, record):
    import csv

    with open(out / record["scores_file"], newline="") as handle:
        return [{"score": float(r["score"]), "label": int(r["label"])} for r in csv.DictReader(handle)]
