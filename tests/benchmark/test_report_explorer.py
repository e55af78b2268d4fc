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
        assert float(cal[2].split()[0]) == pytest.approx(want["image_fpr"], abs=5e-4)
        n_good = sum(1 for _, y in scores if y == 0)
        assert cal[2].endswith(f"({round(want['image_fpr'] * n_good)} of {n_good})")
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
                value = cell.split()[0] if cell else cell
                assert (cell == "\u2013") if want[key] is None else float(value) == pytest.approx(want[key], abs=5e-4)
        # below every score all good parts are rejected; above every score no defect is found
        assert (seen["0"][2], seen["0"][3], seen["1000"][2], seen["1000"][3]) == (
            f"1.000 ({n_good} of {n_good})", "1.000", f"0.000 (0 of {n_good})", "0.000")
        block.find_element("css selector", "button.reset").click()
        assert row("now")[1:] == row("cal")[1:]
        assert browser.execute_script("return document.querySelectorAll('.explorer .mark.cal')[0].style.left") != ""


def record_scores(out, record):
    import csv

    with open(out / record["scores_file"], newline="") as handle:
        return [{"score": float(r["score"]), "label": int(r["label"])} for r in csv.DictReader(handle)]


@pytest.mark.parametrize("rejected, colour", [(1, "near"), (6, "over"), (0, "")])
def test_a_rate_over_the_bound_is_red_only_when_the_count_contradicts_it(tmp_path, rejected, colour):
    """1 of 10 good images over a bound of 0.089 is likely at that rate (probability 0.61): shown,
    not red; 6 of 10 is not (probability 2e-5): red. The probability is the binomial tail the
    bench and docs/pipeline.md use."""
    from scipy.stats import binom

    from pyimgano.benchmark.explorer import SCRIPT, STYLE, explorer_data, explorer_html
    from pyimgano.calibration import CONSISTENT_P, rejects_probability

    good = [float(v) for v in range(10)]  # scores 0..9; the threshold leaves `rejected` above it
    threshold = 9.5 - rejected
    deployed = {"image_threshold": threshold, "image_fpr_target": 0.01, "image_fpr_upper": 0.089, "n_calibration": 32}
    data = explorer_data(good, [20.0, 21.0], deployed)
    page = tmp_path / "page.html"
    page.write_text(f"<html><head><style>{STYLE}</style></head><body>{explorer_html('x', data)}"
                    f"<script>{SCRIPT}</script></body></html>")
    assert rejects_probability(rejected, 10, 0.089) == pytest.approx(binom.sf(rejected - 1, 10, 0.089))
    with headless_chromium() as browser:
        browser.get(page.as_uri())
        cell = browser.find_elements("css selector", ".explorer tr.cal td")[2]
        assert cell.text == f"{rejected / 10:.3f} ({rejected} of 10)"
        assert cell.get_attribute("class") == colour
        if rejected:
            shown = float(cell.get_attribute("title").split("probability ")[1].split()[0])
            assert shown == pytest.approx(rejects_probability(rejected, 10, 0.089), abs=1e-3)
            assert (shown < CONSISTENT_P) == (colour == "over")
