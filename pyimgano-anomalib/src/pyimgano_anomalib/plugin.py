"""Registration module (light: imports pydantic and pyimgano only, never torch or anomalib).

Each wrapped anomalib model is registered as ``anomalib:<module name>`` (the lower-case
name of its anomalib module) with its params model; the adapter class is imported only
when a detector is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pyimgano import DetectorCapabilities, DetectorSpec, hookimpl
from pyimgano_anomalib import params as p


@dataclass(frozen=True)
class ModelEntry:
    """What the registry needs to know about one wrapped anomalib model."""

    name: str
    summary: str
    params: type[BaseModel]
    trains: bool
    check_params: dict[str, Any] = field(default_factory=dict)


_LITE = {"image_size": 64, "max_steps": 2, "batch_size": 4}

MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("patchcore", "anomalib PatchCore: memory bank of backbone patch features, kNN distance",
               p.PatchcoreParams, False, {**_LITE}),
    ModelEntry("padim", "anomalib PaDiM: per-position Gaussian of backbone features, Mahalanobis distance",
               p.PadimParams, False, {**_LITE}),
    ModelEntry("dfm", "anomalib DFM: PCA of pooled deep features, reconstruction error",
               p.DfmParams, False, {**_LITE}),
    ModelEntry("dfkde", "anomalib DFKDE: kernel density of PCA-reduced deep features (image scores only)",
               p.DfkdeParams, False, {**_LITE, "n_pca_components": 2}),
    ModelEntry("efficient_ad", "anomalib EfficientAD: student-teacher PDN plus auto-encoder",
               p.EfficientAdParams, True, {"image_size": 256, "max_steps": 2, "imagenet_penalty": False}),
    ModelEntry("fastflow", "anomalib FastFlow: 2-D normalising flow on backbone features",
               p.FastflowParams, True, {**_LITE, "flow_steps": 2}),
    ModelEntry("stfpm", "anomalib STFPM: student-teacher feature pyramid matching",
               p.StfpmParams, True, {**_LITE}),
    ModelEntry("reverse_distillation", "anomalib Reverse Distillation: one-class bottleneck and student decoder",
               p.ReverseDistillationParams, True, {**_LITE, "backbone": "resnet18"}),
    ModelEntry("cflow", "anomalib CFLOW-AD: conditional normalising flows on backbone features",
               p.CflowParams, True, {**_LITE, "coupling_blocks": 2, "fiber_batch_size": 16}),
    ModelEntry("draem", "anomalib DRAEM: reconstructive and discriminative networks on simulated anomalies",
               p.DraemParams, True, {**_LITE, "textures": False}),
    ModelEntry("dsr", "anomalib DSR: dual subspace re-projection on a pretrained discrete latent model",
               p.DsrParams, True, {**_LITE}),
    ModelEntry("ganomaly", "anomalib GANomaly: encoder-decoder-encoder GAN, latent distance",
               p.GanomalyParams, True, {**_LITE}),
    ModelEntry("uflow", "anomalib U-Flow: U-shaped normalising flow on multi-scale features",
               p.UflowParams, True, {**_LITE}),
    ModelEntry("csflow", "anomalib CS-Flow: cross-scale normalising flow on EfficientNet-B5 features",
               p.CsflowParams, True, {**_LITE, "image_size": 128, "cross_conv_hidden_channels": 64,
                                        "n_coupling_blocks": 1, "pre_trained": False}),
    ModelEntry("cfa", "anomalib CFA: coupled-hypersphere feature adaptation",
               p.CfaParams, True, {**_LITE, "backbone": "resnet18", "pre_trained": False}),
    ModelEntry("supersimplenet", "anomalib SuperSimpleNet: feature adaptor and discriminator on synthetic anomalies",
               p.SupersimplenetParams, True, {**_LITE, "image_size": 128}),
    ModelEntry("fre", "anomalib FRE: feature reconstruction error of a shallow auto-encoder",
               p.FreParams, True, {**_LITE}),
)

MODEL_NAMES = tuple(entry.name for entry in MODELS)
IMAGE_ONLY_MODELS = ("dfkde", "ganomaly")  # anomalib returns no anomaly map
MAP_MODELS = tuple(name for name in MODEL_NAMES if name not in IMAGE_ONLY_MODELS)
EXPORTABLE_MODELS = ("patchcore", "padim", "fastflow", "stfpm")  # anomalib's to_onnx checked against the adapter
_EXPORT = {"exporter": "pyimgano_anomalib.export:export_onnx", "export_formats": ("onnx", "openvino")}


def _spec(entry: ModelEntry) -> DetectorSpec:
    return DetectorSpec(
        name=entry.name,
        summary=entry.summary,
        factory=f"pyimgano_anomalib.detector:{entry.name.title().replace('_', '')}Detector",
        params=entry.params,
        capabilities=DetectorCapabilities(
            pixel_maps=entry.name in MAP_MODELS,
            needs_training_epochs=entry.trains,
            min_train_images=2,
            check_params=entry.check_params,
            **(_EXPORT if entry.name in EXPORTABLE_MODELS else {}),
        ),
    )


@hookimpl
def pyimgano_register_detectors() -> list[DetectorSpec]:
    return [_spec(entry) for entry in MODELS]
