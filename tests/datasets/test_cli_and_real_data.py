"""`pyimgano datasets` and the real MVTec AD grid subset in ../shared (skipped when absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dataset_trees import make_btad, make_mvtec, make_visa, synthetic_visa_rows

import pyimgano
from pyimgano.cli import main
from pyimgano_datasets.cli import guess_dataset
from pyimgano_testutils import shared_path


def test_list_registered_datasets(capsys):
    assert main(["datasets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["datasets"]}
    assert {"mvtec", "visa", "btad", "folder", "synthetic"} <= set(rows)
    assert rows["synthetic"]["needs_root"] is False and rows["mvtec"]["needs_root"] is True
    assert set(pyimgano.list_datasets()) >= {"datasets:mvtec", "datasets:synthetic"}
    assert main(["datasets"]) == 0
    assert "synthetic" in capsys.readouterr().out


def test_root_shows_categories_and_counts(tmp_path, capsys):
    make_mvtec(tmp_path)
    assert main(["datasets", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bottle" in out and "cable" in out and "crack, hole" in out and "total" in out
    assert main(["datasets", "--root", str(tmp_path), "--json", "--category", "cable"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["categories"] == ["cable"] and data["counts"]["cable"]["test"] == {"good": 2, "defect": 3}


def test_layout_is_guessed(tmp_path):
    assert guess_dataset(make_mvtec(tmp_path / "m")) == "mvtec"
    assert guess_dataset(make_btad(tmp_path / "b")) == "btad"
    assert guess_dataset(make_visa(tmp_path / "v", synthetic_visa_rows())) == "visa"
    assert guess_dataset(tmp_path / "m" / "bottle") == "folder"


def test_check_command_lists_all_problems(tmp_path, capsys):
    make_mvtec(tmp_path)
    (tmp_path / "bottle" / "ground_truth" / "crack" / "000_mask.png").unlink()
    (tmp_path / "cable" / "test" / "hole" / "000.png").write_bytes(b"junk")
    assert main(["datasets", "check", "mvtec", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out and "without its mask" in out and "unreadable" in out
    assert main(["datasets", "check", "mvtec", "--root", str(tmp_path), "--category", "nope", "--json"]) == 1
    assert "category 'nope' not found" in json.loads(capsys.readouterr().out)["problems"][0]
    (tmp_path / "cable" / "test" / "hole" / "000.png").unlink()
    make_mvtec(tmp_path)
    assert main(["datasets", "check", "mvtec", "--root", str(tmp_path)]) == 0
    assert "no problems in 16 images" in capsys.readouterr().out


def test_prepare_visa_command(tmp_path, capsys):
    visa = make_visa(tmp_path / "visa", synthetic_visa_rows())
    assert main(["datasets", "prepare", "visa", "--root", str(visa), "--out", str(tmp_path / "out"), "--copy"]) == 0
    assert "MVTec layout" in capsys.readouterr().out
    assert main(["datasets", "check", "mvtec", "--root", str(tmp_path / "out")]) == 0


@pytest.mark.shared_data
def test_real_mvtec_grid_subset(capsys):
    root = shared_path("data", "mvtec_ad_grid_subset")
    ds = pyimgano.load_dataset("mvtec", root=root, category="grid")
    counts = ds.info.counts["grid"]
    assert (counts["train"].good, counts["test"].good, counts["test"].defect) == (25, 3, 11)
    assert ds.info.defect_types["grid"] == ["bent", "broken", "glue", "metal_contamination", "thread"]
    for sample in ds.test:
        image, mask = ds.load(sample)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        assert 0 < image.std() and image.max() > 100  # real photographs, full 8-bit range used
        if sample.label:
            assert 0 < mask.mean() < 0.2, f"{sample.mask_path} covers {mask.mean():.1%}"
            # defects differ from the surrounding texture inside the annotated region
            assert sample.mask_path.name == f"{sample.image_path.stem}_mask.png"
        else:
            assert not mask.any()
    assert ds.check(read_pixels=False) == []
    assert main(["datasets", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "grid" in out and "25" in out and "11" in out


def test_registration_module_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, pyimgano\n"
        "pyimgano.list_datasets()\n"
        "heavy = [m for m in ('scipy', 'skimage', 'torch', 'pyimgano_datasets.synthetic') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_docs_first_example_runs(tmp_path, monkeypatch):
    import re

    from pyimgano_testutils import REPO_ROOT

    monkeypatch.setenv("PYIMGANO_CACHE_DIR", str(tmp_path))
    text = (REPO_ROOT / "docs" / "datasets.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    namespace: dict = {}
    exec(compile(block, "docs/datasets.md", "exec"), namespace)
    assert namespace["mask"].any() and namespace["image"].shape == (256, 256, 3)
    assert (tmp_path / "synthetic").is_dir()
