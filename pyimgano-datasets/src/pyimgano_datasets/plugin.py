"""Registration module of the datasets plugin (light: imports pydantic and pyimgano only).

Registers the data sets and the ``pyimgano datasets`` command (:mod:`pyimgano_datasets.cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pyimgano import CommandSpec, DatasetSpec, NoParams, hookimpl
from pyimgano.bounds import SEED_MAX

DefectKind = Literal["scratch", "stain", "foreign", "missing"]


def _distinct_kinds(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("defect kinds must not repeat")
    return value


class _GeneratedParams(BaseModel):
    """What the generated sets share; each combination of parameters has its own cache folder."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    seed: int = Field(0, ge=0, le=SEED_MAX, description="random seed: same seed, same images")
    in_memory: bool = Field(False, description="generate into memory instead of files (paths are then virtual)")


class SyntheticParams(_GeneratedParams):
    """Parameters of the generated ``synthetic`` textures."""

    image_size: int = Field(256, ge=32, le=2048, description="side of the square images, pixels")
    n_train: int = Field(32, ge=1, le=10000, description="good training images per category")
    n_test_good: int = Field(10, ge=0, le=10000, description="good test images per category")
    n_test_defect: int = Field(16, ge=1, le=10000, description="defective test images per category (kinds take turns)")
    defect_kinds: list[DefectKind] = Field(
        default_factory=lambda: ["scratch", "stain", "foreign", "missing"], min_length=1, description="defect kinds"
    )
    severity: float = Field(1.0, gt=0.0, le=3.0, description="defect contrast (1 = default, higher = easier)")
    cache_dir: Path | None = Field(
        None, description="where generated sets are kept when no root is given (default: ~/.cache/pyimgano/synthetic)"
    )

    _distinct = field_validator("defect_kinds")(_distinct_kinds)


PartsKind = Literal["missing", "misplaced", "rotated", "extra"]


class PartsParams(_GeneratedParams):
    """Parameters of the generated ``synthetic_parts`` board."""

    image_size: int = Field(512, ge=128, le=2048, description="side of the square images, pixels")
    n_train: int = Field(40, ge=1, le=10000, description="good training images")
    n_test_good: int = Field(12, ge=0, le=10000, description="good test images")
    n_test_defect: int = Field(16, ge=1, le=10000, description="defective test images (kinds take turns)")
    defect_kinds: list[PartsKind] = Field(
        default_factory=lambda: ["missing", "misplaced", "rotated", "extra"], min_length=1,
        description="defect kinds: a part missing, misplaced, rotated by 90 degrees, or one too many",
    )
    severity: float = Field(1.0, gt=0.0, le=3.0, description="how far a misplaced part moves (1: at least 0.6 of its size)")
    cache_dir: Path | None = Field(
        None, description="where generated sets are kept when no root is given (default: ~/.cache/pyimgano/synthetic_parts)"
    )

    _distinct = field_validator("defect_kinds")(_distinct_kinds)


class FolderParams(BaseModel):
    """Your own images: an MVTec-layout root, or explicit lists of files."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    train_good: list[Path] | None = Field(None, description="good training images (files or folders)")
    test_good: list[Path] | None = Field(None, description="good test images (files or folders)")
    test_defect: list[Path] | None = Field(None, description="defective test images (files or folders)")
    test_masks: list[Path] | None = Field(
        None, description="masks of the defective images: files in the same order, or folders matched by file stem"
    )
    masks: Literal["auto", "required", "none"] = Field(
        "auto", description="auto: use masks when present; required: a defect image without mask is an error"
    )


class VisaParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    split_file: str = Field("split_csv/1cls.csv", description="split CSV, relative to the root (or absolute)")


MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
VISA_CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1",
    "macaroni2", "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)  # fmt: skip


@hookimpl
def pyimgano_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="synthetic",
            summary="Offline, deterministic MVTec-layout textures (brick, grass, gravel) with exact defect masks",
            factory="pyimgano_datasets.synthetic:load_synthetic",
            params=SyntheticParams,
            needs_root=False,
            categories=("brick", "grass", "gravel"),
        ),
        DatasetSpec(
            name="synthetic_parts",
            summary="Offline, deterministic board of parts (512 px) with structural defects: a part missing, misplaced, "
            "rotated or extra",
            factory="pyimgano_datasets.parts:load_parts",
            params=PartsParams,
            needs_root=False,
            categories=("board",),
        ),
        DatasetSpec(
            name="mvtec",
            summary="MVTec AD: <root>/<category>/{train/good, test/<defect>, ground_truth/<defect>}",
            factory="pyimgano_datasets.mvtec:load_mvtec",
            params=NoParams,
            categories=MVTEC_CATEGORIES,
        ),
        DatasetSpec(
            name="visa",
            summary="VisA read through its split file <root>/split_csv/1cls.csv (no conversion needed)",
            factory="pyimgano_datasets.visa:load_visa",
            params=VisaParams,
            categories=VISA_CATEGORIES,
        ),
        DatasetSpec(
            name="btad",
            summary="BTAD (BeanTech): <root>/<01|02|03>/{train/ok, test/ok, test/ko, ground_truth/ko}",
            factory="pyimgano_datasets.btad:load_btad",
            params=NoParams,
            categories=("01", "02", "03"),
        ),
        DatasetSpec(
            name="folder",
            summary="Your own images: an MVTec-layout root or explicit file lists, masks optional",
            factory="pyimgano_datasets.folder:load_folder",
            params=FolderParams,
            needs_root=False,
        ),
    ]


@hookimpl
def pyimgano_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            name="datasets",
            summary="list data sets; show, check, download or prepare one on disk",
            factory="pyimgano_datasets.cli",
        )
    ]
