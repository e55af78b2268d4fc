"""The wrapped anomalib models, as data (light module: pydantic and pyimgano only).

One :class:`ModelEntry` per model says what the registry needs (name, summary, params
model, factory, capabilities) and how the model is built: the anomalib class, the
parameters passed through to it by name, fixed arguments, how it takes a backbone, the
training budget anomalib publishes for it, and the files it would download. Models whose
entry says everything are built by :class:`pyimgano_anomalib.adapter.AnomalibDetector`
alone (``pyimgano_anomalib.passthrough``); the others have their own module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pyimgano_anomalib import params as p
from pyimgano_anomalib.offline import OfflineFile, files_of


@dataclass(frozen=True)
class Backbone:
    """How an anomalib model takes its CNN backbone.

    ``lite0_layers``: the layers read from an offline EfficientNet-Lite
    (:data:`pyimgano.torchkit.OFFLINE_BACKBONES`: Lite0, Lite1 and Lite2 share their stage
    names) when ``layers`` is None (timm modules ``blocks.0``..``blocks.6``, strides 2..32, chosen to mirror the
    model's ResNet layers); ``layer_arg``: anomalib's argument for the layers (``"layer"``
    takes one, None: the model has no such argument); ``pre_trained_arg``: anomalib takes
    ``pre_trained`` (STFPM and SuperSimpleNet always build their extractor pre-trained).
    """

    lite0_layers: tuple[str, ...] = ()
    layer_arg: str | None = "layers"
    pre_trained_arg: bool = True


@dataclass(frozen=True)
class Budget:
    """The training budget anomalib publishes for a model, and where it says so (read from
    the params model's ``max_epochs`` and ``max_steps`` fields, where it is written)."""

    max_epochs: int
    source: str
    max_steps: int | None = None

    @classmethod
    def of(cls, params: type[BaseModel]) -> Budget:
        epochs, steps = params.model_fields["max_epochs"], params.model_fields["max_steps"]
        return cls(epochs.default, (epochs.json_schema_extra or {}).get("source", ""), steps.default)


@dataclass(frozen=True)
class ModelEntry:
    """One wrapped anomalib model."""

    name: str
    summary: str
    anomalib_class: str
    params: type[BaseModel]
    factory: str
    trains: bool
    maps: bool = True
    passes: tuple[str, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    lite0_args: dict[str, Any] = field(default_factory=dict)  # with any offline EfficientNet-Lite
    backbone: Backbone | None = None
    check_params: dict[str, Any] = field(default_factory=dict)
    known_failures: dict[str, str] = field(default_factory=dict)
    files: tuple[OfflineFile, ...] = ()
    learns_from_anomalies: bool = False  # fit(..., anomalies=, anomaly_masks=): supervised (masks required)
    exportable: bool = False  # anomalib's to_onnx graph, checked against the adapter's scores and maps

    @property
    def budget(self) -> Budget:
        """The training budget anomalib publishes (from the params model)."""
        return Budget.of(self.params)


_LITE = {"image_size": 64, "max_steps": 2, "batch_size": 4}
# Models that read one coarse layer (stride 16-32): at 64 px their 2x2-4x4 maps cannot place the kit's
# defect; at 128 px they do (and at 256 px on realistic data, docs/anomalib.md).
_LITE_MAPS = {**_LITE, "image_size": 128}
_RANDOM = (
    "the kit runs offline with pre_trained=False: a random {what} (its file is not here) at two optimiser steps "
    "does not detect; with the file it is anomalib's model (docs/anomalib.md)"
)
_TWO_STEPS = (
    "two optimiser steps at 64 px ({why}); scores equal anomalib's Engine run (docs/anomalib.md)"
)
_SSN_LITE0 = (
    "offline the kit runs SuperSimpleNet on EfficientNet-Lite0, whose features its synthetic noise (std 0.015, tuned "
    "to Wide-ResNet-50 tv_in1k) barely perturbs: the untrained head scores the bright defect low (docs/anomalib.md)"
)
_PASS = "pyimgano_anomalib.passthrough"


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry(
        "patchcore", "anomalib PatchCore: memory bank of backbone patch features, kNN distance",
        "Patchcore", p.PatchcoreParams, f"{_PASS}:PatchcoreDetector", trains=False,
        passes=("coreset_sampling_ratio", "num_neighbors"),
        backbone=Backbone(lite0_layers=("blocks.2", "blocks.4")), check_params={**_LITE},
        exportable=True,
    ),
    ModelEntry(
        "padim", "anomalib PaDiM: per-position Gaussian of backbone features, Mahalanobis distance",
        "Padim", p.PadimParams, f"{_PASS}:PadimDetector", trains=False,
        passes=("n_features",), lite0_args={"n_features": 100},
        backbone=Backbone(lite0_layers=("blocks.1", "blocks.2", "blocks.4")), check_params={**_LITE},
        exportable=True,
    ),
    ModelEntry(
        "dfm", "anomalib DFM: PCA of pooled deep features, reconstruction error",
        "Dfm", p.DfmParams, f"{_PASS}:DfmDetector", trains=False,
        passes=("pooling_kernel_size", "pca_level", "score_type"),
        backbone=Backbone(lite0_layers=("blocks.4",), layer_arg="layer"), check_params={**_LITE_MAPS},
    ),
    ModelEntry(
        "dfkde", "anomalib DFKDE: kernel density of PCA-reduced deep features (image scores only)",
        "Dfkde", p.DfkdeParams, "pyimgano_anomalib.dfkde:DfkdeDetector", trains=False,
        maps=False, passes=("n_pca_components", "feature_scaling_method", "max_training_points"),
        backbone=Backbone(lite0_layers=("blocks.6",)), check_params={**_LITE, "n_pca_components": 2},
    ),
    ModelEntry(
        "efficient_ad", "anomalib EfficientAD: student-teacher PDN plus auto-encoder",
        "EfficientAd", p.EfficientAdParams, "pyimgano_anomalib.efficient_ad:EfficientAdDetector",
        trains=True,
        passes=("teacher_out_channels", "model_size", "lr", "weight_decay", "padding", "pad_maps"),
        check_params={"image_size": 256, "max_steps": 2, "imagenet_penalty": False, "pre_trained": False},
        files=files_of("efficient_ad"),
    ),
    ModelEntry(
        "fastflow", "anomalib FastFlow: 2-D normalising flow on backbone features",
        "Fastflow", p.FastflowParams, f"{_PASS}:FastflowDetector",
        trains=True,
        passes=("flow_steps", "conv3x3_only", "hidden_ratio"),
        backbone=Backbone(layer_arg=None), check_params={**_LITE, "flow_steps": 2},
        exportable=True,
    ),
    ModelEntry(
        "stfpm", "anomalib STFPM: student-teacher feature pyramid matching",
        "Stfpm", p.StfpmParams, f"{_PASS}:StfpmDetector",
        trains=True,
        backbone=Backbone(lite0_layers=("blocks.1", "blocks.2", "blocks.4"), pre_trained_arg=False),
        check_params={**_LITE},
        exportable=True,
    ),
    ModelEntry(
        "reverse_distillation", "anomalib Reverse Distillation: one-class bottleneck and student decoder",
        "ReverseDistillation", p.ReverseDistillationParams, f"{_PASS}:ReverseDistillationDetector",
        trains=True,
        passes=("anomaly_map_mode",), backbone=Backbone(), check_params={**_LITE, "backbone": "resnet18"},
    ),
    ModelEntry(
        "cflow", "anomalib CFLOW-AD: conditional normalising flows on backbone features",
        "Cflow", p.CflowParams, f"{_PASS}:CflowDetector", trains=True,
        passes=("fiber_batch_size", "condition_vector", "coupling_blocks", "clamp_alpha", "permute_soft", "lr"),
        backbone=Backbone(lite0_layers=("blocks.2", "blocks.4", "blocks.6")),
        check_params={**_LITE_MAPS, "coupling_blocks": 2, "fiber_batch_size": 16},
    ),
    ModelEntry(
        "draem", "anomalib DRAEM: reconstructive and discriminative networks on simulated anomalies",
        "Draem", p.DraemParams, "pyimgano_anomalib.draem:DraemDetector",
        trains=True, passes=("enable_sspcab", "sspcab_lambda"),
        check_params={**_LITE, "textures": False}, files=files_of("draem"),
        known_failures={"check_maps_locate_defect": _TWO_STEPS.format(
            why="the reconstruction and discriminative networks train from scratch: maps not yet sharp, pixel AUROC ~0.7")},
    ),
    ModelEntry(
        "dsr", "anomalib DSR: dual subspace re-projection on a pretrained discrete latent model",
        "Dsr", p.DsrParams, "pyimgano_anomalib.dsr:DsrDetector", trains=True, passes=("latent_anomaly_strength", "upsampling_train_ratio"),
        check_params={**_LITE, "pre_trained": False}, files=files_of("dsr"),
        known_failures={check: _RANDOM.format(what="discrete latent (VQ) model (seeded: every score the same)")
                        for check in ("check_defect_scores_higher", "check_maps_locate_defect")},
    ),
    ModelEntry(
        "ganomaly", "anomalib GANomaly: encoder-decoder-encoder GAN, latent distance",
        "Ganomaly", p.GanomalyParams, f"{_PASS}:GanomalyDetector",
        trains=True, maps=False,
        passes=("batch_size", "n_features", "latent_vec_size", "extra_layers", "add_final_conv_layer",
                "wadv", "wcon", "wenc", "lr", "beta1", "beta2"),
        check_params={**_LITE},
    ),
    ModelEntry(
        "uflow", "anomalib U-Flow: U-shaped normalising flow on multi-scale features",
        "Uflow", p.UflowParams, f"{_PASS}:UflowDetector", trains=True,
        passes=("backbone", "flow_steps", "affine_clamp", "affine_subnet_channels_ratio", "permute_soft"),
        check_params={**_LITE},
    ),
    ModelEntry(
        "csflow", "anomalib CS-Flow: cross-scale normalising flow on EfficientNet-B5 features",
        "Csflow", p.CsflowParams, f"{_PASS}:CsflowDetector", trains=True,
        passes=("cross_conv_hidden_channels", "n_coupling_blocks", "clamp"), fixed={"num_channels": 3},
        check_params={**_LITE, "image_size": 128, "cross_conv_hidden_channels": 64, "n_coupling_blocks": 1,
                      "pre_trained": False},
        known_failures={"check_defect_scores_higher": _RANDOM.format(what="EfficientNet-B5")},
        files=files_of("csflow"),
    ),
    ModelEntry(
        "cfa", "anomalib CFA: coupled-hypersphere feature adaptation",
        "Cfa", p.CfaParams, f"{_PASS}:CfaDetector", trains=True,
        passes=("backbone", "gamma_c", "gamma_d", "num_nearest_neighbors", "num_hard_negative_features", "radius"),
        check_params={**_LITE, "backbone": "resnet18", "pre_trained": False}, files=files_of("cfa"),
    ),
    ModelEntry(
        "supersimplenet", "anomalib SuperSimpleNet: feature adaptor and discriminator on synthetic anomalies",
        "Supersimplenet", p.SupersimplenetParams, "pyimgano_anomalib.supersimplenet:SupersimplenetDetector",
        trains=True, learns_from_anomalies=True,
        passes=("perlin_threshold", "adapt_cls_features"), fixed={"supervised": False},
        backbone=Backbone(lite0_layers=("blocks.2", "blocks.4"), pre_trained_arg=False),
        check_params={**_LITE, "image_size": 128, "backbone": p.OFFLINE_BACKBONE},
        known_failures={check: _SSN_LITE0 for check in ("check_defect_scores_higher", "check_maps_locate_defect")},
        files=files_of("supersimplenet"),
    ),
    ModelEntry(
        "fre", "anomalib FRE: feature reconstruction error of a shallow auto-encoder",
        "Fre", p.FreParams, "pyimgano_anomalib.fre:FreDetector", trains=True,
        passes=("pooling_kernel_size", "latent_dim"),
        backbone=Backbone(lite0_layers=("blocks.4",), layer_arg="layer"), check_params={**_LITE_MAPS},
    ),
    ModelEntry(
        "mh_patchcore", "anomalib multi-head PatchCore: PCA-whitened patch features, merge-reduce memory bank",
        "MHPatchcore", p.MhPatchcoreParams, "pyimgano_anomalib.mh_patchcore:MhPatchcoreDetector",
        trains=False,
        passes=("pca_variance_ratio", "covariance_shrinkage", "memory_bank_size", "local_coreset_size",
                "num_neighbors"),
        backbone=Backbone(lite0_layers=("blocks.2", "blocks.4")), check_params={"image_size": 64, "batch_size": 4},
    ),
    ModelEntry(
        "glass", "anomalib GLASS: discriminator on globally and locally synthesised feature anomalies",
        "Glass", p.GlassParams, "pyimgano_anomalib.glass:GlassDetector",
        trains=True,
        passes=("anomaly_source_path", "pretrain_embed_dim", "target_embed_dim", "patchsize", "patchstride",
                "pre_projection", "discriminator_layers", "discriminator_hidden", "learning_rate", "step", "svd",
                "gaussian_noise_std", "radius_quantile", "focal_loss_quantile_threshold", "mining"),
        backbone=Backbone(lite0_layers=("blocks.2", "blocks.4")),
        check_params={**_LITE, "pretrain_embed_dim": 64, "target_embed_dim": 64, "discriminator_hidden": 64},
        known_failures={"check_maps_locate_defect": _TWO_STEPS.format(
            why="on EfficientNet-Lite0 the discriminator's patch scores peak at the bright disk's rim, not inside it: "
                "image scores rank the defects first, pixel AUROC 0.2-0.3 even after 30 steps; GLASS's feature noise "
                "is tuned to Wide-ResNet-50 like SuperSimpleNet's")},
        files=files_of("glass"),
    ),
    ModelEntry(
        "patchflow", "anomalib PatchFlow: normalising flow on multi-scale patch features",
        "Patchflow", p.PatchflowParams, f"{_PASS}:PatchflowDetector",
        trains=True,
        passes=("flow_steps", "flow_feature_dim", "num_scales", "patch_size", "flow_hidden_dim", "crop_size", "lr",
                "weight_decay"),
        backbone=Backbone(layer_arg=None), check_params={**_LITE},
    ),
    ModelEntry(
        "uninet", "anomalib UniNet: contrastive student-teacher distillation",
        "UniNet", p.UninetParams, f"{_PASS}:UninetDetector", trains=True, passes=("student_backbone", "teacher_backbone", "temperature"),
        check_params={**_LITE, "student_backbone": "resnet50", "teacher_backbone": "resnet50", "pre_trained": False},
        known_failures={check: _RANDOM.format(what="ResNet-50 teacher pair")
                        for check in ("check_defect_scores_higher", "check_maps_locate_defect")},
        files=files_of("uninet"),
    ),
)

ENTRIES: dict[str, ModelEntry] = {entry.name: entry for entry in MODELS}
MODEL_NAMES = tuple(ENTRIES)
MAP_MODELS = tuple(entry.name for entry in MODELS if entry.maps)
IMAGE_ONLY_MODELS = tuple(entry.name for entry in MODELS if not entry.maps)
