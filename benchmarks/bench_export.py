"""Exported models against their source detectors: parity, speed, memory, install size, bad input.

Parity: an inspection pipeline of ``faiss:patchcore`` and of ``faiss:knn`` (offline
EfficientNet-Lite0 backbone, 256 px; as ``pyimgano fit`` makes it: the detector's default
post-processing and both thresholds calibrated on a held-out tenth of the training images) is
fitted on the synthetic set (pyimgano-datasets, category brick) and on the MVTec AD grid subset
when it is present (``--mvtec ROOT``), saved, exported with ``pyimgano export`` (ONNX; OpenVINO
too for patchcore when installed), loaded with ``pyimgano.load``, and both score the test images.
Reported: the largest relative image-score difference (goal 1e-4), the largest absolute map
difference after the same fitted post-processing (goal 1e-3), and how many 0/1 labels (at the
saved image threshold) and mask pixels (at the saved pixel threshold) differ (goal 0).
``--anomalib`` adds anomalib's PaDiM and PatchCore through anomalib's own exporter.

Speed: images/s of the torch path (the source detector) and of the runtime (onnxruntime;
OpenVINO too when installed) at 256 px, batch 1 and batch 16 (images per ``score`` call, as
``pyimgano predict`` makes them; each path runs them with its own defaults: the source's
``batch_size`` 8 per backbone pass, the runtime's 2 per graph run), each in its own worker process
(so that peak memory is that path's alone), the paths taking turns twice and the best of each
kept, in one run: read the ratios, not the absolute figures, on a shared machine. Install size:
the files of every distribution the torch path needs (pyimgano-faiss and its dependencies) against those of the runtime
(pyimgano-core[onnx]), read from the installed distributions' records.

Bad input: a tampered and a truncated ``model.onnx``, a manifest of a newer format and a
geometry that does not fit a fixed-size graph; each must be one line.

    python benchmarks/bench_export.py [--mvtec GRID_DIR] [--anomalib] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 256
BACKBONE = {"backbone": "efficientnet_lite0", "image_size": SIZE, "progress": False}
GOALS = {"score_rel": 1e-4, "map_abs": 1e-3, "speedup_b16": 1.5}


# -- parity ----------------------------------------------------------------------------
def _load_set(name: str, root: str | None, category: str) -> tuple[list, list]:
    from pyimgano import load_dataset

    data = load_dataset(name, root=root, category=category)
    return [data.load(s)[0] for s in data.train], [data.load(s)[0] for s in data.test]


def parity(name: str, detector_name: str, params: dict[str, Any], train: list, test: list, work: Path,
           fmt: str = "onnx") -> dict[str, Any]:
    """Fit an inspection pipeline as ``pyimgano fit`` does (the detector's default post-processing,
    thresholds calibrated on a held-out tenth), save and export it, then compare the two pipelines."""
    import pyimgano
    from pyimgano.export import export_model

    source = pyimgano.Pipeline(detector_name, params=params)
    started = time.perf_counter()
    source.fit(train)
    fit_s = time.perf_counter() - started
    source_dir = source.save(work / f"{name}-source")
    started = time.perf_counter()
    exported_dir = export_model(source_dir, work / f"{name}-{fmt}", format=fmt)
    export_s = time.perf_counter() - started
    exported = pyimgano.load(exported_dir)
    s_scores, s_raw = source.detector.score(test)
    r_scores, r_raw = exported.detector.score(test)
    threshold = source.image_threshold_
    out: dict[str, Any] = {
        "set": name, "detector": detector_name, "format": fmt, "n_test": len(test), "fit_s": round(fit_s, 1),
        "export_s": round(export_s, 1), "postprocess": source.postprocess,
        "image_threshold": threshold, "pixel_threshold": source.pixel_threshold_,
        "max_score_rel_diff": float(np.max(np.abs(r_scores - s_scores) / np.abs(s_scores))),
        "label_mismatches": int(np.sum((r_scores > threshold) != (s_scores > threshold))),
        "closest_score_to_threshold_rel": float(np.min(np.abs(s_scores - threshold) / abs(threshold))),
    }
    if s_raw is not None:
        s_post, r_post = source.postprocess_maps(list(s_raw)), exported.postprocess_maps(list(r_raw))
        out["max_map_abs_diff_raw"] = max(float(np.max(np.abs(a - b))) for a, b in zip(r_raw, s_raw))
        out["max_map_abs_diff_postprocessed"] = max(float(np.max(np.abs(a - b))) for a, b in zip(r_post, s_post))
        pixel = source.pixel_threshold_  # masks as pyimgano predict writes them: post-processed map > pixel threshold
        out["mask_pixel_mismatches"] = int(sum(np.sum((a > pixel) != (b > pixel)) for a, b in zip(r_post, s_post)))
        out["mask_pixels"] = int(sum(m.size for m in s_post))
    return out


# -- speed and memory (worker processes) -------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    """Score ``--images`` images of 256 px ``--repeat`` times; print images/s and peak RSS."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(args.images)]
    from pyimgano import create_detector, load_detector

    if args.worker == "torch":
        detector = load_detector(args.model)
    else:
        detector = create_detector("exported", path=args.model, engine=args.worker)
    detector.score(images[: args.batch])  # warm-up: backbone built, graph compiled
    best = 0.0
    for _ in range(args.repeat):
        started = time.perf_counter()
        for start in range(0, len(images), args.batch):  # as pyimgano predict calls score
            detector.score(images[start : start + args.batch])
        best = max(best, len(images) / (time.perf_counter() - started))
    peak_mb = _peak_rss_mb()
    print(json.dumps({"images_per_s": best, "peak_rss_mb": peak_mb, "torch_imported": "torch" in sys.modules}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it starts afresh at exec,
    so a worker does not report the peak of the process that started it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_worker(kind: str, model: Path, batch: int, images: int, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--batch", str(batch),
           "--images", str(images), "--repeat", str(repeat)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {kind} failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def speed(source_dir: Path, onnx_dir: Path, openvino_dir: Path | None, images: int, repeat: int) -> list[dict]:
    rows = []
    for batch in (1, 16):
        n = max(images, batch * 2)
        row: dict[str, Any] = {"batch": batch, "images": n}
        paths = [(k, m) for k, m in (("torch", source_dir), ("onnxruntime", onnx_dir), ("openvino", openvino_dir))
                 if m is not None]
        for _ in range(2):  # the paths take turns twice: a burst of load elsewhere hits each of them alike
            for kind, model in paths:
                measured = _run_worker(kind, model, batch, n, repeat)
                best = row.get(kind, {}).get("images_per_s", 0.0)
                if measured["images_per_s"] > best:
                    row[kind] = {"images_per_s": round(measured["images_per_s"], 2),
                                 "peak_rss_mb": round(measured["peak_rss_mb"]),
                                 "torch_imported": measured["torch_imported"]}
        row["speedup_onnxruntime"] = round(row["onnxruntime"]["images_per_s"] / row["torch"]["images_per_s"], 2)
        if "openvino" in row:
            row["speedup_openvino"] = round(row["openvino"]["images_per_s"] / row["torch"]["images_per_s"], 2)
        rows.append(row)
        print(f"  batch {batch:2d}: " + ", ".join(
            f"{k} {row[k]['images_per_s']:.1f} img/s ({row[k]['peak_rss_mb']} MB peak)"
            for k in ("torch", "onnxruntime", "openvino") if k in row)
            + f"; runtime/torch {row['speedup_onnxruntime']:.2f}x", flush=True)
    return rows


# -- install size ------------------------------------------------------------------------
def _closure(roots: list[str]) -> set[str]:
    import re
    from importlib import metadata

    seen: set[str] = set()
    todo = list(roots)
    while todo:
        spec = todo.pop()
        name, _, extras = spec.partition("[")
        key = re.sub(r"[-_.]+", "-", name).lower()
        wanted = {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue
        if key not in seen:
            seen.add(key)
        for req in dist.requires or []:
            requirement, _, marker = req.partition(";")
            marker = marker.strip()
            if marker.startswith("extra"):
                extra = marker.split("==")[-1].strip().strip("'\"")
                if extra not in wanted:
                    continue
            elif marker and ("python_version <" in marker or "sys_platform == \"win32\"" in marker):
                continue
            dep = re.split(r"[<>=!~ (]", requirement.strip(), maxsplit=1)[0]
            dep_extras = requirement[requirement.find("["):requirement.find("]") + 1] if "[" in requirement else ""
            dep_key = re.sub(r"[-_.]+", "-", dep).lower()
            if dep_key not in seen:
                todo.append(dep_key + dep_extras)
    return seen


def _installed_mb(names: set[str]) -> float:
    from importlib import metadata

    total = 0
    for name in names:
        dist = metadata.distribution(name)
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20


def install_sizes() -> dict[str, Any]:
    runtime = _closure(["pyimgano-core[onnx]"])
    torch_path = _closure(["pyimgano-faiss"])
    return {
        "runtime_mb": round(_installed_mb(runtime)), "runtime_distributions": len(runtime),
        "torch_path_mb": round(_installed_mb(torch_path)), "torch_path_distributions": len(torch_path),
        "note": "files of the installed distributions each path needs (editable pyimgano packages count their "
                "metadata only); pip's own and the interpreter's files are not counted",
    }


# -- bad input -----------------------------------------------------------------------------
def bad_input(exported: Path, work: Path) -> dict[str, str]:
    from pyimgano.runtime.manifest import EXPORT_FILE

    cases: dict[str, str] = {}

    def attempt(name: str, damage) -> None:
        folder = work / f"bad-{name}"
        shutil.copytree(exported, folder)
        damage(folder)
        result = subprocess.run([sys.executable, "-m", "pyimgano", "predict", "--model", str(folder),
                                 str(work / "one.png"), "--out", str(work / f"out-{name}")],
                                capture_output=True, text=True, check=False)
        lines = result.stderr.strip().splitlines()
        cases[name] = lines[-1] if lines else f"(no error; exit {result.returncode})"
        print(f"  {name}: exit {result.returncode}, {len(lines)} line(s): {cases[name]}")

    def tamper(folder: Path) -> None:
        data = bytearray((folder / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.onnx").write_bytes(bytes(data))

    def truncate(folder: Path) -> None:
        data = (folder / "model.onnx").read_bytes()
        (folder / "model.onnx").write_bytes(data[: len(data) // 2])

    def newer(folder: Path) -> None:
        manifest = json.loads((folder / EXPORT_FILE).read_text())
        manifest["format"] += 1
        (folder / EXPORT_FILE).write_text(json.dumps(manifest))

    def fixed_size(folder: Path) -> None:
        import onnx

        model = onnx.load(str(folder / "model.onnx"))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = 224, 224  # a graph exported for 224 x 224 input
        onnx.save(model, str(folder / "model.onnx"))
        from pyimgano.runtime.manifest import file_entry

        manifest = json.loads((folder / EXPORT_FILE).read_text())
        manifest["files"]["model.onnx"] = file_entry(folder / "model.onnx").model_dump()
        (folder / EXPORT_FILE).write_text(json.dumps(manifest))

    from PIL import Image

    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(work / "one.png")
    for name, damage in (("tampered", tamper), ("truncated", truncate), ("newer_format", newer),
                         ("size_mismatch", fixed_size)):
        attempt(name, damage)
    return cases


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtec", default=None, help="MVTec AD root with the 'grid' category (the subset is enough)")
    parser.add_argument("--anomalib", action="store_true", help="also check anomalib PaDiM and PatchCore exports")
    parser.add_argument("--images", type=int, default=32, help="images per speed measurement")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per measurement (best is kept)")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--worker", choices=("torch", "onnxruntime", "openvino"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import importlib.util

    has_openvino = importlib.util.find_spec("openvino") is not None
    report: dict[str, Any] = {"goals": GOALS, "cpus": len(os.sched_getaffinity(0)), "parity": []}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = Path(tmp)
        sets = [("synthetic", "synthetic", None, "brick")]
        if args.mvtec and Path(args.mvtec, "grid").is_dir():
            sets.append(("mvtec-grid", "mvtec", args.mvtec, "grid"))
        elif args.mvtec:
            print(f"(no MVTec grid category under {args.mvtec}: skipped)")
        for label, dataset, root, category in sets:
            train, test = _load_set(dataset, root, category)
            cases = [("faiss:patchcore", BACKBONE, "onnx"), ("faiss:knn", BACKBONE, "onnx")]
            if has_openvino:
                cases.append(("faiss:patchcore", BACKBONE, "openvino"))
            if args.anomalib:
                lite = {"backbone": "efficientnet_lite0", "image_size": SIZE}
                cases += [("anomalib:padim", lite, "onnx"), ("anomalib:patchcore", lite, "onnx")]
            for detector_name, params, fmt in cases:
                tag = f"{label}-{detector_name.replace(':', '-')}"
                row = parity(tag, detector_name, params, train, test, work, fmt)
                report["parity"].append(row)
                maps = (f", maps {row['max_map_abs_diff_postprocessed']:.1e} post-processed "
                        f"({row['max_map_abs_diff_raw']:.1e} raw), mask pixels differing "
                        f"{row['mask_pixel_mismatches']}/{row['mask_pixels']}") if "mask_pixels" in row else ""
                print(f"parity {label} {detector_name} [{fmt}]: {row['n_test']} images, scores "
                      f"{row['max_score_rel_diff']:.1e} relative, labels differing {row['label_mismatches']}"
                      f"{maps}; export {row['export_s']} s", flush=True)
        print(f"speed at {SIZE} px, faiss:patchcore (EfficientNet-Lite0), {report['cpus']} CPUs, best of "
              f"{args.repeat}:", flush=True)
        source = work / "synthetic-faiss-patchcore-source"
        onnx_dir = work / "synthetic-faiss-patchcore-onnx"
        ov_dir = work / "synthetic-faiss-patchcore-openvino" if has_openvino else None
        report["speed"] = speed(source, onnx_dir, ov_dir, args.images, args.repeat)
        report["install"] = install_sizes()
        inst = report["install"]
        print(f"installed size: runtime (pyimgano-core[onnx]) {inst['runtime_mb']} MB in "
              f"{inst['runtime_distributions']} distributions; torch path (pyimgano-faiss) {inst['torch_path_mb']} MB "
              f"in {inst['torch_path_distributions']}")
        print("bad input (pyimgano predict on a damaged export):")
        report["bad_input"] = bad_input(onnx_dir, work)
    b16 = next(r for r in report["speed"] if r["batch"] == 16)
    verdict = "met" if b16["speedup_onnxruntime"] >= GOALS["speedup_b16"] else "NOT met"
    print(f"goal runtime >= {GOALS['speedup_b16']}x torch at batch 16: {verdict} ({b16['speedup_onnxruntime']}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
