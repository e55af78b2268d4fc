"""pyimgano fit --defects DIR [--defect-masks DIR]: a user's own shots."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pyimgano.cli import main


def test_fit_with_defects_and_masks_then_predict(plugin, kinds_root, tmp_path, capsys):
    base = kinds_root / "alpha"
    out = tmp_path / "model"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(base / "train" / "good"), "--val-fraction", "0.2",
                 "--defects", str(base / "test" / "spot"), "--defect-masks", str(base / "ground_truth"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tuned on 3 defective image(s)" in printed and "(f1)" in printed
    pipeline = json.loads((out / "pyimgano-pipeline.json").read_text())
    assert pipeline["few_shot"]["k"] == 3 and not pipeline["few_shot"]["image_only"]
    assert pipeline["pixel_threshold"]["strategy"] == "f1"
    training = json.loads((out / "training.json").read_text())
    assert [p.rsplit("/", 1)[1] for p in training["defects"]] == ["000.png", "001.png", "002.png"]
    assert all(m.endswith("_mask.png") and "/spot/" in m for m in training["defect_masks"])
    assert main(["predict", "--model", str(out), str(base / "test" / "crack"), "--out", str(tmp_path / "pred")]) == 0


def test_fit_with_defects_without_masks_says_only_the_image_threshold_is_tuned(plugin, kinds_root, tmp_path, capsys):
    base = kinds_root / "alpha"
    assert main(["fit", "--detector", "benchtest:mean", "--train", str(base / "train" / "good"), "--val-fraction", "0.2",
                 "--defects", str(base / "test" / "crack"), "--out", str(tmp_path / "model")]) == 0
    captured = capsys.readouterr()
    assert "note: the shots have no defect masks: only the image threshold is tuned" in captured.err
    assert "(image threshold only)" in captured.out


def test_bad_defect_folders_are_one_line(plugin, kinds_root, tmp_path, capsys):
    base = kinds_root / "alpha"
    empty = tmp_path / "empty"
    empty.mkdir()
    small = tmp_path / "small-masks"  # every defect has its mask, at the wrong size
    small.mkdir()
    for path in sorted((base / "test" / "spot").glob("*.png")):
        Image.fromarray(np.full((5, 7), 255, np.uint8)).save(small / f"{path.stem}_mask.png")
    common = ["fit", "--detector", "benchtest:mean", "--train", str(base / "train" / "good"), "--out",
              str(tmp_path / "model")]
    cases = [
        (["--defects", str(empty)], f"--defects {empty}: folder holds no image files"),
        (["--defects", str(base / "test" / "spot"), "--defect-masks", str(empty)],
         f"--defect-masks {empty}: 3 of 3 defect image(s) without exactly one mask: 000.png (no mask)"),
        (["--defect-masks", str(base / "ground_truth")], "--defect-masks and the --few-shot-* flags go with --defects"),
        (["--defects", str(base / "test" / "spot"), "--few-shot-search", "[1"], "--few-shot-search '[1': not JSON"),
        (["--defects", str(tmp_path / "missing")], f"--defects {tmp_path / 'missing'}: no such file or folder"),
        (["--defects", str(base / "test" / "spot"), "--defect-masks", str(small)],
         f"--defect-masks {small}: {small / '000_mask.png'} is 7x5 pixels, its image {base / 'test' / 'spot' / '000.png'} 24x24"),
    ]
    for flags, message in cases:
        assert main(common + flags) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "model").exists()
