"""The benchmark computes every registered metric (plugins' too), a config chooses the set,
and resume reuses a finished run whenever its record holds the metrics asked for."""

from __future__ import annotations

import csv
import io
import json

import pytest
from benchtest import CORE_METRIC_KEYS, RecordingExecutor, in_order, plugin_on_path
from rich.console import Console

from pyimgano.benchmark.config import BenchmarkConfig, ConfigError, DatasetEntry, DetectorEntry, expand_jobs
from pyimgano.benchmark.metric_set import resolve_metrics
from pyimgano.benchmark.runner import run_benchmark
from pyimgano_testutils import make_fake_distribution

EXAMPLE_KEY = "example:recall_at_fpr"

# a second third-party plugin: a pixel metric (pixel AUROC under another name) and one that crashes
EXTRA_PLUGIN = '''
from pyimgano import MetricSpec, hookimpl

@hookimpl
def pyimgano_register_metrics():
    return [
        MetricSpec(name="px_auroc_again", summary="Pixel AUROC, by a plugin", level="pixel", title="px again",
                   factory="extra_metrics_impl:px_auroc_again", headline=True),
        MetricSpec(name="crashes", summary="Always raises", level="image",
                   factory="extra_metrics_impl:crashes"),
    ]
'''
EXTRA_IMPL = '''
from pyimgano.metrics import pixel_auroc

def px_auroc_again(masks, maps):
    return pixel_auroc(masks, maps)

def crashes(labels, scores):
    raise RuntimeError("metric went wrong")
'''


@pytest.fixture
def with_example(fake_plugin_site, example_plugin_site):
    """The fake detectors and data set, plus the example plugin and its metric."""
    with plugin_on_path(fake_plugin_site, example_plugin_site):
        yield


@pytest.fixture
def with_extra(fake_plugin_site, tmp_path_factory):
    site = make_fake_distribution(tmp_path_factory.mktemp("extra-site"), "pyimgano-extra", "1.0.0",
                                  {"extra": "extra_metrics_plugin"},
                                  {"extra_metrics_plugin": EXTRA_PLUGIN, "extra_metrics_impl": EXTRA_IMPL})
    with plugin_on_path(fake_plugin_site, site):
        yield
    import sys

    for name in [m for m in sys.modules if m.startswith("extra_metrics")]:
        del sys.modules[name]


def config(out, toy_root, *detectors, **kwargs):
    entries = [DetectorEntry(name=d) if isinstance(d, str) else DetectorEntry(name=d[0], params=d[1])
               for d in detectors]
    return BenchmarkConfig(detectors=entries, datasets=[DatasetEntry(name="toy", root=str(toy_root))],
                           out=str(out), overlays=0, **kwargs)


def quiet(width=200):
    return Console(file=io.StringIO(), width=width)


def _runs(out):
    return json.loads((out / "results.json").read_text())["runs"]


def test_a_plugin_metric_is_computed_and_shown_everywhere(with_example, toy_root, tmp_path):
    from pyimgano_example.metrics import recall_at_fpr

    run_benchmark(config(tmp_path, toy_root, "benchtest:mean"), console=quiet())
    runs = _runs(tmp_path)
    registered = [m.key for m in resolve_metrics()]
    assert EXAMPLE_KEY in registered
    for run in runs:  # every registered metric; the plugin's image metric among the image metrics
        assert list(run["metrics"]) == registered
        assert in_order(["image_f1_max", EXAMPLE_KEY, "pixel_auroc"], registered)
        scores_file = next((tmp_path / "scores").glob(f"benchtest-mean__toy__{run['category']}__*.csv"))
        with open(scores_file, newline="") as handle:
            rows = list(csv.DictReader(handle))
        expected = recall_at_fpr([int(r["label"]) for r in rows], [float(r["score"]) for r in rows])
        assert run["metrics"][EXAMPLE_KEY] == pytest.approx(expected)
    summary = (tmp_path / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| category |")).split(" | ")
    assert in_order(["img F1", "recall@FPR0", "px AUROC"], header)
    assert "- recall@FPR0: Fraction of defective images caught while flagging at most max_fpr" in summary
    report = (tmp_path / "report.html").read_text()
    assert ">recall@FPR0</th>" in report and "<b>recall@FPR0</b>: Fraction of defective images" in report
    csv_header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert csv_header[5 : 5 + len(registered)] == registered


def test_the_core_metric_keys_and_titles_are_those_of_old_result_folders(fake_plugin, toy_root, tmp_path):
    run_benchmark(config(tmp_path, toy_root, "benchtest:mean"), console=quiet())
    assert all(in_order(CORE_METRIC_KEYS, list(r["metrics"])) for r in _runs(tmp_path))
    summary = (tmp_path / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| category |")).split(" | ")
    titles = ["img AUROC", "img AP", "img F1", "px AUROC", "px AP", "px F1", "AUPRO@0.3"]
    assert in_order(titles, header) and header[-4:] == ["fit s", "predict s", "img/s", "peak MiB |"]


def test_a_config_chooses_the_metrics_and_their_order(with_example, toy_root, tmp_path):
    cfg = config(tmp_path, toy_root, "benchtest:mean", metrics=["aupro", EXAMPLE_KEY, "core:image_auroc"])
    run_benchmark(cfg, console=quiet())
    assert all(list(r["metrics"]) == ["aupro", EXAMPLE_KEY, "image_auroc"] for r in _runs(tmp_path))
    header = next(line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| cat"))
    assert "| AUPRO@0.3 | recall@FPR0 | img AUROC | img F1@thr | img FPR@thr | px F1@thr | fit s |" in header
    assert "px AUROC" not in (tmp_path / "report.html").read_text()


def test_an_unknown_metric_is_a_one_line_error_naming_the_known_ones(with_example, toy_root, tmp_path):
    with pytest.raises(ConfigError) as info:
        expand_jobs(config(tmp_path, toy_root, "benchtest:mean", metrics=["image_auroc", "aupr"]))
    message = str(info.value)
    assert "\n" not in message
    assert message == f"unknown metric 'aupr'; known metrics: {', '.join(m.key for m in resolve_metrics())}"
    assert "image_auroc" in message and EXAMPLE_KEY in message
    with pytest.raises(ConfigError, match="metrics is empty"):
        expand_jobs(config(tmp_path, toy_root, "benchtest:mean", metrics=[]))


def test_the_metric_set_is_not_part_of_the_job_key(with_example, toy_root, tmp_path):
    keys = {tuple(j.key for j in expand_jobs(config(tmp_path, toy_root, "benchtest:mean", metrics=m)))
            for m in (None, ["image_auroc"], ["aupro", EXAMPLE_KEY])}
    assert len(keys) == 1


def test_resume_reuses_runs_that_hold_the_metrics_asked_for_and_reruns_the_others(with_example, toy_root,
                                                                                 tmp_path):
    def run(metrics):
        executor = RecordingExecutor()
        run_benchmark(config(tmp_path, toy_root, "benchtest:mean", metrics=metrics), executor=executor,
                      console=quiet())
        return executor.seen, _runs(tmp_path)

    seen, runs = run(["image_auroc", "aupro"])
    assert len(seen) == 2
    first = {r["category"]: r["metrics"] for r in runs}

    seen, runs = run(["aupro"])  # a subset: nothing reruns, the tables show what was asked for
    assert seen == [] and all(list(r["metrics"]) == ["aupro"] for r in runs)
    assert {r["category"]: r["metrics"]["aupro"] for r in runs} == {c: m["aupro"] for c, m in first.items()}

    seen, runs = run(["image_auroc", EXAMPLE_KEY])  # a metric the records lack: those runs are redone
    assert len(seen) == 2 and all(r["metrics"][EXAMPLE_KEY] is not None for r in runs)

    seen, _ = run(["image_auroc", EXAMPLE_KEY])
    assert seen == []


def test_pixel_plugin_metrics_need_maps_and_a_failing_metric_loses_nothing_else(with_extra, toy_root, tmp_path):
    cfg = config(tmp_path, toy_root, "benchtest:mean", "benchtest:nomaps")
    cfg.datasets[0].categories = ["alpha"]
    outcome = run_benchmark(cfg, console=quiet())
    runs = {r["detector"]: r for r in _runs(tmp_path)}
    mean, nomaps = runs["benchtest:mean"]["metrics"], runs["benchtest:nomaps"]["metrics"]
    assert runs["benchtest:mean"]["status"] == "ok"
    assert mean["extra:px_auroc_again"] == pytest.approx(mean["pixel_auroc"])
    assert nomaps["extra:px_auroc_again"] is None and nomaps["image_auroc"] is not None
    assert mean["extra:crashes"] is None and mean["image_auroc"] is not None
    notes = next(r for r in outcome.records if r["run"]["detector"] == "benchtest:mean")["extra"]["notes"]
    assert "extra:crashes: RuntimeError: metric went wrong" in notes
    # a headline metric of a plugin joins the side-by-side tables
    assert "### px again side by side" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("width", [80, 240])
def test_the_terminal_summary_fits_the_console_and_keeps_every_value_whole(with_example, toy_root, tmp_path,
                                                                            width):
    from pyimgano.benchmark.runner import print_summary

    cfg = config(tmp_path, toy_root, "benchtest:mean", ("benchtest:mean", {"sigma": 0.0}),
                 ("benchtest:fragile", {"fail_height": 32}), seeds=[0, 1])
    outcome = run_benchmark(cfg, console=quiet())
    console = quiet(width)
    print_summary(outcome, console)
    text = console.file.getvalue()
    lines = text.splitlines()
    path_lines = [line for line in lines if line.startswith(("results:", "report:"))]
    assert all(len(line) <= width for line in lines if line not in path_lines), text
    for title in ("img AUROC", "AUPRO@0.3", "recall@FPR0", "peak MiB", "benchtest:mean (sigma=0.0)"):
        # wide tables head their columns on two lines ("img" over "AUROC", "AUPRO" over "@0.3")
        assert title in text or all(part in text for part in title.replace("@", " @").split()), title
    summary_cells = {c for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| ")
                     for c in line.strip("| ").split(" | ")}
    spreads = [c for c in summary_cells if " ± " in c]
    assert spreads
    for cell in spreads:  # every "mean ± std" cell of summary.md is in the console, whole
        assert cell in text, cell
    assert "error: benchtest:fragile on toy/beta (seed 0): fit: RuntimeError: boom: cannot handle height 32" in (
        " ".join(text.split()))
    if width == 240:  # wide enough: the tables, one line per row
        assert any(line.split()[:3] == ["category", "detector", "seeds"] for line in lines), text
    else:  # one block per row
        assert not any(line.split()[:2] == ["category", "detector"] for line in lines), text
