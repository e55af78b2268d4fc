"""Validate before working: every command-line failure is one line and a documented exit status;
the API raises pyimgano errors, and no threshold is ever NaN or infinite."""

from __future__ import annotations

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams, PyimganoError
from pyimgano.thresholds import SPEC_FORMS, QuantileThreshold, make_strategy
from pyimgano_testutils import make_fake_distribution, run_cli

COMMANDS = """
from pyimgano import CommandSpec, hookimpl

@hookimpl
def pyimgano_register_commands():
    return [CommandSpec(name="explode", summary="fails in every way on demand", factory="explode_cli")]
"""

COMMAND = """
import errno
import os
import signal
import time

from pyimgano.errors import DatasetError


def add_arguments(parser):
    parser.add_argument("how", choices=["bug", "input", "disk", "multiline", "ctrl-c-in-import"])


def run(args):
    if args.how == "bug":
        raise KeyError("no such key")
    if args.how == "input":
        raise DatasetError("data/x.png: not an image")
    if args.how == "disk":
        raise OSError(errno.ENOSPC, "No space left on device", "out/predictions.csv")
    if args.how == "ctrl-c-in-import":  # what Python raises for a Ctrl-C while a class is created
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: its handler raises KeyboardInterrupt
            time.sleep(30)
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'x' instance 'y' in 'Z'") from exc
    raise RuntimeError("first line\\n  second line")
"""


@pytest.fixture(scope="module")
def explode_site(tmp_path_factory):
    return make_fake_distribution(tmp_path_factory.mktemp("explode"), "pyimgano-explode", "1.0.0",
                                  {"explode": "explode_plugin"},
                                  {"explode_plugin": COMMANDS, "explode_cli": COMMAND})


HINT = " (unexpected: run with --debug or PYIMGANO_DEBUG=1 for the traceback)"


@pytest.mark.parametrize(("args", "status", "line"), [
    (["explode", "input"], 2, "error: data/x.png: not an image"),
    (["explode", "disk"], 3, "error: out/predictions.csv: No space left on device"),
    (["explode", "bug"], 4, "error: KeyError: 'no such key'" + HINT),
    (["explode", "multiline"], 4, "error: RuntimeError: first line second line" + HINT),
    (["explode", "ctrl-c-in-import"], 130, "interrupted"),
    (["explode", "nothing"], 2, "error: pyimgano explode: argument how: invalid choice: 'nothing' (choose from "
                                "'bug', 'input', 'disk', 'multiline', 'ctrl-c-in-import') (see 'pyimgano explode --help')"),
    (["explode"], 2, "error: pyimgano explode: the following arguments are required: how (see 'pyimgano explode "
                     "--help')"),
    (["fit", "--val-fraction", "x"], 2, "error: pyimgano fit: argument --val-fraction: invalid float value: 'x' "
                                        "(see 'pyimgano fit --help')"),
    (["no-such-command"], 2, None),
    (["predict", "--model", "nowhere", "x.png", "--out", "p"], 2,
     "error: nowhere: not a saved pyimgano model (no pyimgano-model.json)"),
])
def test_every_failure_is_one_line_with_its_exit_status(explode_site, tmp_path, args, status, line):
    result = run_cli(*args, pythonpath=[explode_site])
    assert result.returncode == status, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    if line is not None:
        assert result.stderr.splitlines() == [line]


@pytest.mark.parametrize("debug", [["--debug", "explode", "bug"], ["explode", "bug", "--debug"]])
def test_debug_flag_and_variable_show_the_traceback(explode_site, debug):
    for args, env in [(debug, {}), (["explode", "bug"], {"PYIMGANO_DEBUG": "1"})]:
        result = run_cli(*args, pythonpath=[explode_site], env=env)
        assert result.returncode == 4
        assert result.stderr.startswith("Traceback (most recent call last):")
        assert 'raise KeyError("no such key")' in result.stderr
        assert result.stderr.splitlines()[-1] == "error: KeyError: 'no such key'"


def test_the_debug_flag_is_in_the_help(explode_site):
    assert "--debug" in run_cli("--help").stdout and "PYIMGANO_DEBUG" in run_cli("--help").stdout
    assert "--debug" in run_cli("explode", "--help", pythonpath=[explode_site]).stdout


# -- the API ---------------------------------------------------------------------------------
@pytest.fixture
def mad(example_plugin):
    rng = np.random.default_rng(0)
    images = [rng.integers(90, 160, size=(24, 20, 3), dtype=np.uint8) for _ in range(6)]
    return pyimgano.create_detector("example:mad", image_size=16).fit(images), images


@pytest.mark.parametrize(("strategy", "message"), [
    ("bogus", "threshold 'bogus' does not parse; expected " + SPEC_FORMS),
    ({"strategy": "quantile", "q": 2}, "threshold {'strategy': 'quantile', 'q': 2}: q: Input should be "
                                       "less than or equal to 1; expected " + SPEC_FORMS),
    ({"strategy": "quantile", "qq": 0.5}, "threshold {'strategy': 'quantile', 'qq': 0.5}: qq: Extra inputs "
                                          "are not permitted; expected " + SPEC_FORMS),
    ({"strategy": "nope"}, "threshold {'strategy': 'nope'}: unknown strategy; choose one of fixed, quantile, f1, fpr"),
    (float("nan"), "threshold nan: value: must be a finite number, got nan; expected " + SPEC_FORMS),
    ([0.5], "threshold [0.5]: expected " + SPEC_FORMS + ", a dict such as {'strategy': 'quantile', 'q': 0.99}, "
            "or a number"),
])
def test_calibrate_with_a_bad_strategy_raises_a_pyimgano_error_before_scoring(mad, strategy, message):
    detector, images = mad
    scored = []
    detector.decision_function = lambda imgs: scored.append(imgs) or np.zeros(len(imgs))
    with pytest.raises(InvalidParams) as err:
        detector.calibrate(images, strategy=strategy)
    assert str(err.value) == message and isinstance(err.value, PyimganoError) and isinstance(err.value, ValueError)
    assert scored == [] and detector.threshold_ is None  # refused before any image was scored
    with pytest.raises(InvalidParams):
        make_strategy(strategy)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "abc", None, True])
def test_set_threshold_refuses_what_is_not_a_finite_number(mad, value):
    detector, _ = mad
    detector.set_threshold(0.5)
    with pytest.raises(InvalidParams, match=r"^example:mad: threshold must be a (finite )?number, got "):
        detector.set_threshold(value)
    assert detector.threshold_ == 0.5
    assert detector.set_threshold(np.float32(0.25)).threshold_ == 0.25


class _Broken(QuantileThreshold):
    """A strategy whose result is not finite (a third-party strategy, or scores at the float limits)."""

    def compute(self, scores, labels=None):
        return float("inf")


def test_a_calibration_result_that_is_not_finite_is_refused(mad):
    detector, images = mad
    with pytest.raises(InvalidParams, match=r"^example:mad: the quantile threshold must be a finite number, got inf$"):
        detector.calibrate(images, strategy=_Broken())
    assert detector.threshold_ is None
