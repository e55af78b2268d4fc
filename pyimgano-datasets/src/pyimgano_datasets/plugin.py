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


class SyntheticParams(BaseModel):
    """Parameters of the generated ``synthetic`` set; each combination has its own cache folder."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    seed: int = Field(0, ge=0, le=SEED_MAX, description="random seed: same seed, same images")
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
    in_memory: bool = Field(False, description="generate into memory instead of files (paths are then virtual)")

    @field_validator("defect_kinds")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("defect kinds must not repeat")
        return value


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
