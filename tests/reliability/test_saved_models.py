"""Saved models: nothing saved is lost, and a tampered or hostile model folder is one clear line.

Save swaps the folder in whole (a full disk keeps the old model); load validates
pyimgano-model.json, keeps state_file inside the folder, bounds the state before
decompressing it and checks it against the detector's state_arrays.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pyimgano
from pyimgano import InvalidParams, ModelLoadError, OutputError, OutputExists
from pyimgano.atomic import CONTENTS_FILE
from pyimgano.limits import DEFAULT_MAX_STATE_BYTES, max_state_bytes, set_max_state_bytes

CONFIG = "pyimgano-model.json"


def _images(seed: int, n: int = 6, shape=(24, 20)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(90, 160, size=(*shape, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def mad(example_plugin):
    return pyimgano.create_detector("example:mad", image_size=32, sigma=0.0).fit(_images(0))


@pytest.fixture
def saved(mad, tmp_path) -> Path:
    mad.set_threshold(0.25)
    return mad.save(tmp_path / "model")


def _edit_config(model: Path, **changes) -> None:
    config = json.loads((model / CONFIG).read_text())
    (model / CONFIG).write_text(json.dumps({**config, **changes}))


def _edit_state(model: Path, **arrays) -> None:
    with np.load(model / "state.npz") as data:
        state = {k: data[k] for k in data.files}
    state.update(arrays)
    np.savez(model / "state.npz", **{k: v for k, v in state.items() if v is not None})


def _load_error(model: Path) -> str:
    with pytest.raises(ModelLoadError) as err:
        pyimgano.load_detector(model)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- class 1: nothing already saved is lost ------------------------------------------------
def _full_disk_during(monkeypatch, function: str = "savez") -> None:
    """Writing the state file fills the disk half-way (as the 600 KB tmpfs did)."""
    real = np.savez

    def savez(path, **arrays):
        real(path, **arrays)
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("pyimgano.detector.np.savez", savez)


def test_a_refit_that_meets_a_full_disk_keeps_the_old_model(mad, saved, monkeypatch):
    probe = _images(9, 3)
    before = pyimgano.load_detector(saved).decision_function(probe)
    listing = sorted(p.name for p in saved.parent.iterdir())
    refit = pyimgano.create_detector("example:mad", image_size=32, sigma=0.0).fit(_images(5))
    _full_disk_during(monkeypatch)
    with pytest.raises(OutputError) as err:
        refit.save(saved)
    assert str(err.value) == (f"{saved}: the model could not be saved (No space left on device); "
                              "the model saved there before is intact")
    assert isinstance(err.value, OSError)
    assert sorted(p.name for p in saved.parent.iterdir()) == listing  # no partial copy left beside it
    loaded = pyimgano.load_detector(saved)
    assert np.array_equal(loaded.decision_function(probe), before) and loaded.threshold_ == 0.25


def test_a_first_save_that_meets_a_full_disk_leaves_nothing(mad, tmp_path, monkeypatch):
    _full_disk_during(monkeypatch)
    with pytest.raises(OutputError, match="the model could not be saved .*; nothing was left there"):
        mad.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_a_saved_model_whole_and_refuses_other_folders(mad, saved, tmp_path):
    mad.save(saved)  # a saved model is replaced whole: nothing of the old folder is left
    assert sorted(p.name for p in saved.iterdir()) == [CONTENTS_FILE, CONFIG, "state.npz"]
    (saved / "mine.bin").write_bytes(b"the user's own file")
    with pytest.raises(OutputExists, match=r"model: a saved pyimgano model that also holds 1 file\(s\) it did not "
                                           r"write \(mine.bin\); replacing it would delete them"):
        mad.save(saved)
    assert (saved / "mine.bin").read_bytes() == b"the user's own file"
    (saved / "mine.bin").unlink()
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    with pytest.raises(OutputError) as err:
        mad.save(project)
    assert str(err.value) == (f"{project}: holds 1 entry (notes.txt) and is not a saved pyimgano model (no "
                              f"{CONFIG}); refusing to replace it, choose a new or empty folder")
    assert (project / "notes.txt").read_text() == "mine" and len(list(project.iterdir())) == 1
    (tmp_path / "empty").mkdir()
    assert mad.save(tmp_path / "empty") == tmp_path / "empty" and (tmp_path / "empty" / CONFIG).is_file()


def test_saving_through_a_link_replaces_the_model_it_points_to(mad, saved, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(saved)
    mad.set_threshold(0.5)
    mad.save(link)
    assert link.is_symlink() and json.loads((saved / CONFIG).read_text())["threshold"] == 0.5


def _can_mount_tmpfs(where: Path) -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    where.mkdir(exist_ok=True)
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs '{where}'"], capture_output=True)
    return probe.returncode == 0


REFIT_ON_A_SMALL_DISK = textwrap.dedent("""
    import sys
    import numpy as np
    import pyimgano

    disk = sys.argv[1]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8) for _ in range(4)]
    first = pyimgano.create_detector("example:mad", image_size=160).fit(images).set_threshold(1.0)
    first.save(disk + "/model")
    print("first", float(first.decision_function(images[:1])[0]))
    second = pyimgano.create_detector("example:mad", image_size=160).fit(images[::-1])
    try:
        second.save(disk + "/model")
    except pyimgano.OutputError as exc:
        print("error", exc)
    loaded = pyimgano.load_detector(disk + "/model")
    print("loaded", float(loaded.decision_function(images[:1])[0]), loaded.threshold_)
""")


def test_a_real_full_disk_keeps_the_old_model(example_plugin_site, tmp_path):
    """The reported case: a 600 KB tmpfs, a model of ~300 KB, a second save of the same size."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (no user namespaces); the injected ENOSPC cases cover it")
    (tmp_path / "refit.py").write_text(REFIT_ON_A_SMALL_DISK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_plugin_site), os.environ.get("PYTHONPATH", "")])}
    script = f"mount -t tmpfs -o size=600k tmpfs '{disk}' && exec '{sys.executable}' '{tmp_path / 'refit.py'}' '{disk}'"
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["error"] == (f"{disk}/model: the model could not be saved (No space left on device); "
                              "the model saved there before is intact")
    assert lines["loaded"] == f"{lines['first']} 1.0"


# -- class 4: the model state is bounded ---------------------------------------------------
@pytest.fixture(scope="session")
def state_bomb(tmp_path_factory) -> Path:
    """A 1 MB state.npz whose one array inflates to 1 GB of zeros (deflate at its best ratio)."""
    path = tmp_path_factory.mktemp("bomb") / "state.npz"
    n = 250_000_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("mean.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
            zeros = bytes(16 * 1024 * 1024)
            for start in range(0, 4 * n, len(zeros)):
                member.write(zeros[: min(len(zeros), 4 * n - start)])
    return path


@pytest.mark.slow
def test_a_one_megabyte_state_that_inflates_to_a_gigabyte_is_refused(saved, state_bomb):
    assert state_bomb.stat().st_size < 1_100_000
    shutil.copy(state_bomb, saved / "state.npz")
    size = zipfile.ZipFile(state_bomb).getinfo("mean.npy")
    assert _load_error(saved) == (
        f"{saved / 'state.npz'}: array 'mean' would inflate from {size.compress_size:,} to {size.file_size:,} "
        f"bytes ({size.file_size / size.compress_size:,.0f} times, more than the limit of 100); refused as a "
        "decompression bomb")


def test_the_state_size_limit_is_configurable_and_named(saved, monkeypatch):
    monkeypatch.delenv("PYIMGANO_MAX_STATE_BYTES", raising=False)
    assert max_state_bytes() == DEFAULT_MAX_STATE_BYTES == 4 * 1024**3
    state_bytes = 32 * 32 * 3 * 4 + 128  # the mean image and its .npy header
    monkeypatch.setenv("PYIMGANO_MAX_STATE_BYTES", "10000")
    assert _load_error(saved) == (f"{saved / 'state.npz'}: model state of {state_bytes:,} bytes exceeds the limit "
                                  "of 10,000 bytes (set PYIMGANO_MAX_STATE_BYTES to change it)")
    set_max_state_bytes(state_bytes)  # the API sets the variable, so worker processes inherit it
    assert pyimgano.load_detector(saved).threshold_ == 0.25
    set_max_state_bytes(None)
    assert pyimgano.max_state_bytes() == DEFAULT_MAX_STATE_BYTES
    monkeypatch.setenv("PYIMGANO_MAX_STATE_BYTES", "a lot")
    with pytest.raises(InvalidParams, match="PYIMGANO_MAX_STATE_BYTES='a lot': expected a positive number of bytes"):
        pyimgano.load_detector(saved)


def _npy(shape, dtype: str, data: bytes) -> bytes:
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return out.getvalue() + data


def test_an_array_header_that_claims_more_than_its_data_is_refused_before_allocating(saved):
    with zipfile.ZipFile(saved / "state.npz", "w") as archive:  # numpy would allocate 4 TB first
        archive.writestr("mean.npy", _npy((10**12,), "<f4", b"\0" * 64))
    assert _load_error(saved) == (f"{saved / 'state.npz'}: array 'mean' claims shape (1000000000000,) of float32 "
                                  "(4,000,000,000,000 bytes) but holds 192 bytes; refused")


@pytest.mark.parametrize(("member", "message"), [
    (("mean.npy", _npy((2,), "|O", b"\x80\x04N.")), "array 'mean' has dtype object; a state holds plain numbers, "
                                                    "booleans or text (no Python objects, no pickle)"),
    (("notes.txt", b"hello"), "unreadable model state ('notes.txt' is not a .npy array)"),
])
def test_pickles_and_foreign_members_are_refused(saved, member, message):
    with zipfile.ZipFile(saved / "state.npz", "w") as archive:
        archive.writestr(*member)
    assert _load_error(saved) == f"{saved / 'state.npz'}: {message}"


# -- class 5: model files are validated on load --------------------------------------------
@pytest.mark.parametrize(("change", "problem"), [
    ({"plugin_version": 1.2}, "plugin_version: expected a string, got 1.2"),
    ({"detector": 123}, "detector: expected a string, got 123"),
    ({"threshold": "abc"}, 'threshold: expected a number, got "abc"'),
    ({"params": [1, 2]}, "params: expected an object of parameters, got [1, 2]"),
    ({"state_file": 5}, "state_file: expected a string, got 5"),
    ({"detector": "example mad"}, 'detector: expected a detector name, plugin:name, got "example mad"'),
    ({"plugin": "faiss"}, "detector 'example:mad' is not a detector of plugin 'faiss'"),
    ({"threshhold": 0.5}, "threshhold: unknown field (fields: format, detector, plugin, plugin_version, params, "
                          "threshold, state_file), got 0.5"),
    ({"threshold": True}, "threshold: expected a number, got true"),
])
def test_each_kind_of_edit_to_the_model_file_is_one_line(saved, change, problem):
    _edit_config(saved, **change)
    assert _load_error(saved) == f"{saved / CONFIG}: invalid model file: {problem}"


def test_a_parameter_value_the_detector_refuses_is_one_line(saved):
    _edit_config(saved, params={"image_size": "big", "sigma": 0.0})
    assert _load_error(saved) == (f"{saved / CONFIG}: invalid parameters for detector example:mad: image_size: "
                                  "Input should be a valid integer, unable to parse string as an integer")


def test_non_finite_thresholds_are_refused_in_files(saved):
    text = (saved / CONFIG).read_text().replace('"threshold": 0.25', '"threshold": NaN')
    (saved / CONFIG).write_text(text)
    assert _load_error(saved) == f"{saved / CONFIG}: corrupt model config (NaN is not a number JSON allows)"
    (saved / CONFIG).write_text(text.replace("NaN", "1e999"))  # parses as infinity
    assert _load_error(saved) == f"{saved / CONFIG}: invalid model file: threshold: expected a finite number, got Infinity"


@pytest.mark.parametrize(("content", "problem"), [
    ({"format": 2}, "model format 2 is not supported (this pyimgano reads format 1; a newer one may need a newer "
                    "pyimgano)"),
    ({"format": "1"}, "model format '1' is not supported"),
    ([1, 2], "corrupt model config (a JSON list, not an object)"),
])
def test_formats_and_shapes_of_the_file(saved, content, problem):
    if isinstance(content, dict):
        _edit_config(saved, **content)
    else:
        (saved / CONFIG).write_text(json.dumps(content))
    assert _load_error(saved).startswith(f"{saved / CONFIG}: {problem}")


@pytest.mark.parametrize("state_file", ["../outside/stolen.npz", "/etc/passwd", "sub/../../x.npz", ".."])
def test_state_file_stays_inside_the_model_folder(saved, state_file):
    outside = saved.parent / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(saved / "state.npz", outside / "stolen.npz")
    _edit_config(saved, state_file=state_file)
    assert _load_error(saved) == (f"{saved / CONFIG}: state_file {state_file!r} points outside the root {saved}; "
                                  "refused")


def test_a_state_file_inside_the_folder_may_be_renamed(saved):
    (saved / "state.npz").rename(saved / "arrays.npz")
    _edit_config(saved, state_file="arrays.npz")
    assert pyimgano.load_detector(saved).threshold_ == 0.25
    _edit_config(saved, state_file=".")
    assert _load_error(saved) == f"{saved / CONFIG}: state_file '.' names the folder itself, not a file"


@pytest.mark.parametrize(("arrays", "problem"), [
    ({"mean": np.zeros((16, 16, 3), np.float32)},
     "mean has shape (16, 16, 3); example:mad expects (image_size=32, image_size=32, 3)"),
    ({"mean": np.zeros((32, 32, 3), np.int64)}, "mean has dtype int64; example:mad expects float"),
    ({"mean": np.full((32, 32, 3), np.nan, np.float32)}, "mean holds 3,072 non-finite value(s) (NaN or infinity)"),
    ({"mean": None, "embeddings": np.zeros((2, 3))},
     "holds embeddings, not the state of example:mad (mean): was it saved by another detector?"),
    ({"extra": np.zeros(3)}, "unexpected array 'extra'; example:mad saves only mean"),
])
def test_the_state_is_checked_against_the_detector_before_it_is_used(saved, arrays, problem):
    _edit_state(saved, **arrays)
    assert _load_error(saved) == f"{saved / 'state.npz'}: {problem}; refused"


def test_a_model_of_another_detector_says_so(saved, example_plugin):
    _edit_config(saved, detector="faiss:knn", plugin="faiss", plugin_version=None)
    message = _load_error(saved)
    assert message.startswith(f"{saved / CONFIG}: parameter sigma is not of detector faiss:knn (its parameters: "
                              "backbone, layers, ")
    assert message.endswith("): was this model saved by another detector?") and message.count("image_size") == 1
    _edit_config(saved, params={})  # the parameters fit: the state tells
    assert _load_error(saved) == (f"{saved / 'state.npz'}: holds mean, not the state of faiss:knn (embeddings): "
                                  "was it saved by another detector?; refused")


def test_loading_through_a_detector_class_checks_the_kind(saved):
    from pyimgano_example.detector import MeanAbsDiff

    from pyimgano_faiss.knn import GlobalKNN

    assert isinstance(MeanAbsDiff.load(saved), MeanAbsDiff)
    with pytest.raises(ModelLoadError, match=rf"^{saved}: saved by detector example:mad \(MeanAbsDiff\), not a "
                                             "GlobalKNN$"):
        GlobalKNN.load(saved)


def test_a_threshold_that_is_not_finite_is_never_saved(mad, saved):
    before = (saved / CONFIG).read_text()
    mad.threshold_ = float("nan")  # set around set_threshold, which refuses it
    with pytest.raises(InvalidParams, match=r"threshold_ must be a finite number, got nan"):
        mad.save(saved)
    assert (saved / CONFIG).read_text() == before


@pytest.mark.torch
def test_a_memory_bank_of_the_wrong_width_is_one_line_not_a_faiss_assertion(tmp_path):
    from pyimgano_faiss.backbones import feature_channels

    detector = pyimgano.create_detector("faiss:patchcore", backbone="efficientnet_lite0", image_size=64,
                                        coreset_ratio=0.5, progress=False)
    images = _images(1, n=3, shape=(64, 64))
    model = detector.fit(images).save(tmp_path / "patchcore")
    width = sum(feature_channels("efficientnet_lite0"))
    with np.load(model / "state.npz") as data:
        bank = data["memory_bank"]
    assert bank.shape[1] == width
    _edit_state(model, memory_bank=bank[:, :100])
    assert _load_error(model) == (f"{model / 'state.npz'}: memory_bank has shape ({len(bank)}, 100); faiss:patchcore "
                                  f"expects (bank_rows, feature_dim={width}); refused")
    spoiled = bank.copy()
    spoiled[0, 0] = np.inf
    _edit_state(model, memory_bank=spoiled)
    assert _load_error(model).endswith("memory_bank holds 1 non-finite value(s) (NaN or infinity); refused")
    _edit_state(model, memory_bank=bank)
    assert np.array_equal(pyimgano.load_detector(model).decision_function(images), detector.decision_function(images))


@pytest.mark.torch
def test_knn_embeddings_are_checked_too(tmp_path):
    detector = pyimgano.create_detector("faiss:knn", backbone="efficientnet_lite0", image_size=64, progress=False)
    model = detector.fit(_images(2, n=3, shape=(64, 64))).save(tmp_path / "knn")
    _edit_state(model, embeddings=np.zeros((3, 7), np.float32))
    assert _load_error(model) == (f"{model / 'state.npz'}: embeddings has shape (3, 7); faiss:knn expects "
                                  "(n_train, feature_dim=152); refused")
