"""``pyimgano check-plugin`` and the kit on the example third-party plugin."""

from __future__ import annotations

import json

import pytest

from pyimgano.testing import check_detector, check_names, check_plugin
from pyimgano.testing.components import METRIC_CHECKS
from pyimgano_testutils import make_fake_distribution, run_cli

BROKEN_PLUGIN = '''
from broken_detectors import GoodParams as Size
from pyimgano import DetectorSpec, hookimpl

@hookimpl
def pyimgano_register_detectors():
    return [
        DetectorSpec(name="good", summary="conforms", factory="broken_detectors:GoodDetector", params=Size),
        DetectorSpec(name="nan", summary="NaN scores", factory="broken_detectors:NaNScores", params=Size),
        DetectorSpec(name="undeclared", summary="params model lacks size", factory="broken_detectors:GoodDetector"),
    ]
'''


def metric_check_names():
    return [c.name for c in METRIC_CHECKS]


def test_kit_passes_on_the_example_plugin(example_plugin):
    results = check_plugin("example")
    assert {r.component for r in results} == {"example", "example:mad", "example:recall_at_fpr"}
    assert [r.check for r in results if r.component == "example:mad"] == check_names()
    # the example declares no out-of-fold scoring (capabilities.out_of_fold), so that check does not apply
    status = {(r.component, r.check): r.status for r in results}
    assert status.pop(("example:mad", "check_out_of_fold")) == "not applicable"
    assert set(status.values()) == {"passed"}, [r for r in results if r.status != "passed"]


def test_check_detector_by_name_uses_spec_capabilities_and_params(example_plugin):
    results = check_detector("example:mad", params={"image_size": 16, "sigma": 0.0})
    assert {r.status for r in results if r.check != "check_out_of_fold"} == {"passed"}
    from pyimgano.errors import InvalidParams

    with pytest.raises(InvalidParams, match="image_size"):
        check_detector("example:mad", params={"image_size": 2})


def test_cli_table_and_exit_code_zero(example_plugin_site):
    proc = run_cli("check-plugin", "example", pythonpath=[example_plugin_site], env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(check_names()) - 1 + 2 + len(metric_check_names())  # the plugin-level checks, the metric's
    # (less check_out_of_fold, which does not apply to the example)
    for name in ("example:mad", "check_save_load_round_trip", "check_registration_module_is_light",
                 "example:recall_at_fpr", f"{total} passed"):
        assert name in proc.stdout


def _broken_site(tmp_path):
    import broken_detectors

    site = make_fake_distribution(tmp_path / "site", "pyimgano-broken", "0.3.0", {"broken": "broken_plugin"},
                                  {"broken_plugin": BROKEN_PLUGIN})
    return [site, broken_detectors.__file__.rsplit("/", 1)[0]]


@pytest.mark.parametrize("columns", [80, 200])
def test_cli_output_keeps_every_message_readable_at_any_width(tmp_path, columns):
    path = _broken_site(tmp_path)
    results = json.loads(run_cli("check-plugin", "broken", "--json", pythonpath=path).stdout)["results"]
    messages = [r["message"] for r in results if r["message"]]
    assert any(len(m) > 60 for m in messages)  # long messages: the case that squeezed the table
    proc = run_cli("check-plugin", "broken", pythonpath=path, env={"COLUMNS": str(columns)})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), proc.stdout
    table = any("component" in line and "message" in line for line in lines)
    if columns == 80:  # no room for a message column: one block per component, messages on their own lines
        assert not table
        flowing = " ".join(proc.stdout.split())
        for message in messages:
            assert " ".join(message.split()) in flowing, message
    else:
        assert table
        for message in messages:
            assert all(word in proc.stdout for word in message.split()), message
    assert "failed" in lines[-1]


def test_cli_json_one_component_with_known_failure(example_plugin_site):
    proc = run_cli("check-plugin", "example:mad", "--json", "--set", "image_size=32", "--set", "mad.sigma=1.5",
                   "--known-failure", "check_unseen_image_size=just declared", pythonpath=[example_plugin_site])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    by_check = {r["check"]: r for r in data["results"]}
    assert set(by_check) == set(check_names())
    assert by_check["check_unseen_image_size"]["status"] == "fixed"
    assert data["summary"] == {"passed": len(check_names()) - 2, "fixed": 1, "not applicable": 1}


def test_cli_exit_one_naming_the_failed_check(tmp_path):
    import broken_detectors

    site = make_fake_distribution(tmp_path / "site", "pyimgano-broken", "0.3.0", {"broken": "broken_plugin"},
                                  {"broken_plugin": BROKEN_PLUGIN})
    helpers = broken_detectors.__file__.rsplit("/", 1)[0]
    proc = run_cli("check-plugin", "broken", "--json", pythonpath=[site, helpers])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)["results"]
    failed = {(r["component"], r["check"]): r["message"] for r in results if r["status"] == "failed"}
    assert ("broken:nan", "check_scores_finite_one_per_image") in failed
    assert failed[("broken:nan", "check_scores_finite_one_per_image")].startswith(
        "check_scores_finite_one_per_image: broken:nan returned image scores")
    assert not any(component == "broken:good" for component, _ in failed)
    assert "size" in failed[("broken:undeclared", "check_params_match_spec")]
    assert ("broken:undeclared", "check_save_load_round_trip") in failed
    # one check only, by name
    proc = run_cli("check-plugin", "broken:good", "--check", "check_fit_returns_self", pythonpath=[site, helpers])
    assert proc.returncode == 0 and "1 passed" in proc.stdout


def test_cli_unknown_target_is_a_clear_error():
    proc = run_cli("check-plugin", "no-such-plugin")
    assert proc.returncode == 2
    assert "'no-such-plugin' is neither a plugin" in proc.stderr
    for args, words in ((["--known-failure", "check_typo=x"], "check_typo"),
                        (["--check", "check_other_typo"], "check_other_typo"),
                        (["--set", "image_aurocc.k=1"], "image_aurocc")):
        proc = run_cli("check-plugin", "core:image_auroc", *args)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr



def test_plugin_wide_run_reports_a_component_that_cannot_be_set_up(tmp_path):
    import broken_detectors

    plugin = BROKEN_PLUGIN.replace('factory="broken_detectors:GoodDetector")',
                                   'factory="broken_detectors:GoodDetector", '
                                   'capabilities=DetectorCapabilities(check_params={"bogus": 1}))')
    plugin = plugin.replace("from pyimgano import DetectorSpec",
                            "from pyimgano import DetectorCapabilities, DetectorSpec")
    site = make_fake_distribution(tmp_path / "site", "pyimgano-broken", "0.3.0", {"broken": "broken_plugin"},
                                  {"broken_plugin": plugin})
    helpers = broken_detectors.__file__.rsplit("/", 1)[0]
    proc = run_cli("check-plugin", "broken", "--json", "--check", "check_fit_returns_self", pythonpath=[site, helpers])
    assert proc.returncode == 1
    results = {(r["component"], r["check"]): r for r in json.loads(proc.stdout)["results"]}
    assert "bogus" in results[("broken:undeclared", "setup")]["message"]
    assert results[("broken:good", "check_fit_returns_self")]["status"] == "passed"
    proc = run_cli("check-plugin", "broken:undeclared", pythonpath=[site, helpers])
    assert proc.returncode == 2 and "bogus" in proc.stderr


DECLARING_PLUGIN = '''
from broken_detectors import GoodParams as Size
from pyimgano import DetectorCapabilities, DetectorSpec, hookimpl

REASON = "scores are negated log-likelihoods, fixed in 2.0"

@hookimpl
def pyimgano_register_detectors():
    return [DetectorSpec(
        name="inverted", summary="declares its known failures", factory="broken_detectors:InvertedScores",
        params=Size, capabilities=DetectorCapabilities(check_params={"size": 16}, known_failures={
            "check_defect_scores_higher": REASON, "check_maps_locate_defect": REASON}))]
'''


def test_known_failures_declared_in_the_spec_are_reported_not_failed(tmp_path):
    import broken_detectors

    site = make_fake_distribution(tmp_path / "site", "pyimgano-declares", "2.0.0", {"declares": "declares_plugin"},
                                  {"declares_plugin": DECLARING_PLUGIN})
    helpers = broken_detectors.__file__.rsplit("/", 1)[0]
    proc = run_cli("check-plugin", "declares:inverted", "--json", pythonpath=[site, helpers])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["check"]: r for r in json.loads(proc.stdout)["results"]}
    for check in ("check_defect_scores_higher", "check_maps_locate_defect"):
        assert results[check]["status"] == "known failure"
        assert "fixed in 2.0" in results[check]["message"] and "AUROC" in results[check]["message"]
