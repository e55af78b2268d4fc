"""anomalib models behind the pyimgano detector contract.

``fit`` builds the anomalib lightning module and trains it with lightning's ``Trainer``
(anomalib's own training steps, optimisers and callbacks) on the given images, on the
CPU, with no logger, no checkpoints and lightning's folder in a temporary directory.
Scoring calls the module's torch model in eval mode and returns its raw ``pred_score``
and ``anomaly_map`` (no min-max normalisation, no threshold), maps resized to each input
image's size. ``save`` writes the module's state dict as safetensors next to the JSON
config; ``load`` rebuilds the module from the params and loads it back (no pickle).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pyimgano import Detector
from pyimgano.errors import InvalidParams, ModelLoadError
from pyimgano_anomalib.errors import MissingOfflineFile
from pyimgano_anomalib.plugin import MAP_MODELS, MODELS

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing hub file fails at once instead of hanging

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from pyimgano.torchkit import LITE0_TIMM_NAME, read_state_dict, timm_name
from pyimgano_anomalib import weights as w

STATE_FILE = "anomalib-model.safetensors"
_ENTRIES = {entry.name: entry for entry in MODELS}

# Backbone layers used with the offline EfficientNet-Lite0 (timm modules blocks.0..6:
# strides 2, 4, 8, 16, 32), mirroring each model's ResNet layers.
_LITE0_LAYERS = {
    "patchcore": ["blocks.2", "blocks.4"],
    "padim": ["blocks.1", "blocks.2", "blocks.4"],
    "dfm": ["blocks.4"],
    "dfkde": ["blocks.6"],
    "cflow": ["blocks.2", "blocks.4", "blocks.6"],
    "stfpm": ["blocks.1", "blocks.2", "blocks.4"],
    "fre": ["blocks.4"],
    "supersimplenet": ["blocks.2", "blocks.4"],
}


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> 3 x size x size float in [0, 1], resized as anomalib's pre-processor does."""
    tensor = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    if tensor.shape[-2:] != (size, size):
        tensor = TF.resize(tensor, [size, size], antialias=True)
    return tensor


class _Images(torch.utils.data.Dataset):
    """In-memory normal images as anomalib ``ImageItem`` objects (label 0)."""

    def __init__(self, images: list[np.ndarray], size: int) -> None:
        self.tensors = [to_tensor(img, size) for img in images]

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index: int) -> Any:
        from anomalib.data.dataclasses.torch import ImageItem

        return ImageItem(image=self.tensors[index], gt_label=torch.tensor(0), image_path=f"image-{index}")


def _make_datamodule(images: list[np.ndarray], size: int, batch_size: int, eval_batch_size: int) -> Any:
    """A lightning data module over in-memory images; ``val_dataloader`` serves the same
    normal images (models such as EfficientAD and CFA read ``trainer.datamodule``)."""
    import lightning
    from anomalib.data.dataclasses.torch import ImageBatch

    dataset = _Images(images, size)

    class InMemoryDataModule(lightning.LightningDataModule):
        name = "pyimgano"
        category = ""

        def __init__(self) -> None:
            super().__init__()
            self.train_batch_size = min(batch_size, len(dataset))
            self.eval_batch_size = eval_batch_size
            self.train_data = dataset

        def train_dataloader(self) -> torch.utils.data.DataLoader:
            # Shuffled from the global generator (seeded in fit), as anomalib's own data
            # modules do: the random streams then match an Engine run with the same seed.
            return torch.utils.data.DataLoader(
                dataset, batch_size=self.train_batch_size, shuffle=True, drop_last=False,
                collate_fn=ImageBatch.collate, num_workers=0,
            )

        def val_dataloader(self) -> torch.utils.data.DataLoader:
            return torch.utils.data.DataLoader(
                dataset, batch_size=self.eval_batch_size, shuffle=False, collate_fn=ImageBatch.collate, num_workers=0
            )

    return InMemoryDataModule()


def reseed_before_memory_bank(seed: int) -> Any:
    """A lightning callback that re-seeds just before a memory-bank model's ``fit`` (PatchCore's
    coreset draw), whichever hook triggers it first: the draw then depends on the seed
    alone, not on how many random numbers model building and data loading used before."""
    import lightning

    class ReseedBeforeMemoryBank(lightning.Callback):
        def __init__(self) -> None:
            self.done = False

        def _reseed(self, pl_module: Any) -> None:
            if not self.done and not bool(getattr(pl_module, "_is_fitted", True)):
                lightning.seed_everything(seed, verbose=False)
                self.done = True

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self._reseed(pl_module)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._reseed(pl_module)

    return ReseedBeforeMemoryBank()


@contextlib.contextmanager
def _lightning_dir(work_dir: str | None) -> Iterator[Path]:
    if work_dir is not None:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="pyimgano-anomalib-") as tmp:
        yield Path(tmp)


class AnomalibDetector(Detector):
    """Base adapter; subclasses name the anomalib model (``model_name``)."""

    model_name: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        entry = _ENTRIES[self.model_name]
        try:
            self.config = entry.params.model_validate(params)
        except Exception as exc:  # noqa: BLE001 - pydantic ValidationError
            raise InvalidParams(f"invalid parameters for detector anomalib:{self.model_name}: {exc}") from None
        super().__init__(**self.config.model_dump())
        self.component = f"anomalib:{self.model_name}"
        self.plugin = "anomalib"
        self.supports_maps = entry.name in MAP_MODELS
        self.module_: Any = None
        self.fit_info_: dict[str, Any] = {}

    # -- building ---------------------------------------------------------------------
    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        """Constructor arguments of the anomalib lightning module (model specific)."""
        raise NotImplementedError

    def _anomalib_class(self) -> type:
        raise NotImplementedError

    def _build(self, mode: w.Mode) -> Any:
        """The anomalib lightning module, with our pre-processor and no post-processing."""
        cfg = self.config
        cls = self._anomalib_class()
        size = (cfg.image_size, cfg.image_size)
        pre_processor = cls.configure_pre_processor(image_size=size)
        weights = getattr(cfg, "weights", None)
        if not getattr(cfg, "pre_trained", True):
            mode = "random"  # also for backbones anomalib always builds pre-trained (STFPM's teacher...)
        with w.offline_pretrained(self.component, mode, weights):
            module = cls(
                pre_processor=pre_processor, post_processor=False, evaluator=False, visualizer=False,
                **self._anomalib_kwargs(mode),
            )
        return module

    def _backbone_kwargs(self, mode: w.Mode, *, layer_key: str = "layers", single: bool = False) -> dict[str, Any]:
        cfg = self.config
        backbone = timm_name(cfg.backbone)
        layers = cfg.layers
        if layers is None and backbone == LITE0_TIMM_NAME:
            layers = _LITE0_LAYERS.get(self.model_name)
        out: dict[str, Any] = {"backbone": backbone, "pre_trained": cfg.pre_trained and mode == "load"}
        if layers is not None:
            if single and len(layers) != 1:
                raise InvalidParams(f"{self.component}: layers must name exactly one layer, got {layers}")
            out[layer_key] = layers[0] if single else list(layers)
        return out

    # -- training ---------------------------------------------------------------------
    def _check_training_set(self, images: list[np.ndarray]) -> None:
        if len(images) < 2:
            raise ValueError(
                f"{self.component}: fit() needs at least 2 normal images, got {len(images)} "
                "(anomalib's models estimate statistics over several images)"
            )
        shapes = sorted({img.shape[:2] for img in images})
        if len(shapes) > 1:
            raise ValueError(
                f"{self.component}: training images must share one size, got {len(shapes)} sizes "
                f"({', '.join(f'{h}x{wd}' for h, wd in shapes[:4])}); resize them first"
            )

    def _trainer_arguments(self, module: Any, root: Path) -> dict[str, Any]:
        cfg = self.config
        args = {k: v for k, v in module.trainer_arguments.items() if k not in {"devices", "max_epochs", "val_check_interval"}}
        args.update(
            accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(root), max_epochs=cfg.max_epochs,
            max_steps=cfg.max_steps if cfg.max_steps is not None else -1, num_sanity_val_steps=0,
            limit_val_batches=0, deterministic=False, callbacks=[reseed_before_memory_bank(cfg.seed)],
        )
        if cfg.time_limit_s is not None:
            args["max_time"] = {"seconds": float(cfg.time_limit_s)}
        return args

    def _fit(self, images: list[np.ndarray]) -> None:
        self._check_training_set(images)
        import lightning

        _quiet_lightning()
        cfg = self.config
        lightning.seed_everything(cfg.seed, workers=True, verbose=False)
        start = time.perf_counter()
        module = self._build("load")
        datamodule = _make_datamodule(images, cfg.image_size, cfg.batch_size, cfg.eval_batch_size)
        with _lightning_dir(cfg.work_dir) as root:
            trainer = lightning.Trainer(**self._trainer_arguments(module, root))
            trainer.fit(module, datamodule=datamodule)
        self._after_training(module, datamodule)
        module.eval()
        self.module_ = module
        self.fit_info_ = {
            "fit_s": time.perf_counter() - start,
            "epochs": int(trainer.current_epoch),
            "steps": int(trainer.global_step),
        }

    def _after_training(self, module: Any, datamodule: Any) -> None:
        """Finish what anomalib does at validation start (memory banks, map statistics)."""
        from anomalib.models.components import MemoryBankMixin

        if isinstance(module, MemoryBankMixin) and not bool(module._is_fitted):
            module.fit()
            module._is_fitted = torch.tensor([True])

    # -- scoring ----------------------------------------------------------------------
    def _score(self, images: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        module = self.module_
        module.eval()
        cfg = self.config
        transform = module.pre_processor.transform if module.pre_processor is not None else None
        scores: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(images), cfg.eval_batch_size):
                chunk = images[start : start + cfg.eval_batch_size]
                batch = torch.stack([to_tensor(img, cfg.image_size) for img in chunk])
                if transform is not None:
                    batch = transform(batch)
                out = module.model(batch)
                scores.append(out.pred_score.detach().reshape(len(chunk)).double().cpu().numpy())
                if self.supports_maps and out.anomaly_map is not None:
                    raw = out.anomaly_map.detach().float()
                    raw = raw.reshape(len(chunk), 1, *raw.shape[-2:])
                    for img, one in zip(chunk, raw):
                        size = img.shape[:2]
                        resized = F.interpolate(one[None], size=size, mode="bilinear", align_corners=False)
                        maps.append(resized[0, 0].numpy().astype(np.float32))
        score_array = np.concatenate(scores)
        if not maps:
            return score_array, None
        if len({m.shape for m in maps}) == 1:
            return score_array, np.stack(maps)
        return score_array, maps

    # -- persistence ------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {"anomalib_state_in": np.array([STATE_FILE])}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._state_file = str(state["anomalib_state_in"][0]) if "anomalib_state_in" in state else STATE_FILE

    def _save_files(self, directory: Path) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.module_.state_dict().items()}
        save_file(tensors, str(directory / STATE_FILE), metadata={"detector": self.component})

    def _load_files(self, directory: Path) -> None:
        from safetensors.torch import load_file

        path = directory / getattr(self, "_state_file", STATE_FILE)
        if not path.is_file():
            raise ModelLoadError(f"{directory}: {self.component} model weights {path.name} are missing")
        module = self._build("random")
        state = load_file(str(path))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"{path}: does not fit {self.component} with the saved parameters: {exc}") from None
        module.eval()
        self.module_ = module


# -- model adapters -------------------------------------------------------------------
def _anomalib_model(name: str) -> type:
    import anomalib.models as models

    return getattr(models, name)


class PatchcoreDetector(AnomalibDetector):
    model_name = "patchcore"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Patchcore")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {**self._backbone_kwargs(mode), "coreset_sampling_ratio": cfg.coreset_sampling_ratio,
                "num_neighbors": cfg.num_neighbors}


class PadimDetector(AnomalibDetector):
    model_name = "padim"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Padim")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        kwargs = self._backbone_kwargs(mode)
        n_features = self.config.n_features
        if n_features is None and kwargs["backbone"] not in ("resnet18", "wide_resnet50_2"):
            n_features = 100
        return {**kwargs, "n_features": n_features}


class DfmDetector(AnomalibDetector):
    model_name = "dfm"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Dfm")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {**self._backbone_kwargs(mode, layer_key="layer", single=True),
                "pooling_kernel_size": cfg.pooling_kernel_size, "pca_level": cfg.pca_level,
                "score_type": cfg.score_type}


class DfkdeDetector(AnomalibDetector):
    model_name = "dfkde"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Dfkde")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {**self._backbone_kwargs(mode), "n_pca_components": cfg.n_pca_components,
                "feature_scaling_method": cfg.feature_scaling_method,
                "max_training_points": cfg.max_training_points}

    def _check_training_set(self, images: list[np.ndarray]) -> None:
        super()._check_training_set(images)
        cfg = self.config
        seen = len(images) if cfg.max_steps is None else min(len(images), cfg.max_steps * cfg.batch_size)
        if seen < cfg.n_pca_components:
            raise ValueError(
                f"{self.component}: the PCA keeps n_pca_components={cfg.n_pca_components} components of one "
                f"feature vector per image, so fit() needs at least {cfg.n_pca_components} images, got {seen} "
                f"({len(images)} images, max_steps={cfg.max_steps}, batch_size={cfg.batch_size}); "
                "lower n_pca_components or train on more images"
            )


class CflowDetector(AnomalibDetector):
    model_name = "cflow"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Cflow")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {**self._backbone_kwargs(mode), "fiber_batch_size": cfg.fiber_batch_size,
                "condition_vector": cfg.condition_vector, "coupling_blocks": cfg.coupling_blocks,
                "clamp_alpha": cfg.clamp_alpha, "permute_soft": cfg.permute_soft, "lr": cfg.lr}


class FastflowDetector(AnomalibDetector):
    model_name = "fastflow"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Fastflow")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        kwargs = self._backbone_kwargs(mode)
        kwargs.pop("layers", None)
        return {**kwargs, "flow_steps": cfg.flow_steps, "conv3x3_only": cfg.conv3x3_only,
                "hidden_ratio": cfg.hidden_ratio}


class StfpmDetector(AnomalibDetector):
    model_name = "stfpm"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Stfpm")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        kwargs = self._backbone_kwargs(mode)
        kwargs.pop("pre_trained")
        return kwargs


class ReverseDistillationDetector(AnomalibDetector):
    model_name = "reverse_distillation"

    def _anomalib_class(self) -> type:
        return _anomalib_model("ReverseDistillation")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        return {**self._backbone_kwargs(mode), "anomaly_map_mode": self.config.anomaly_map_mode}


class FreDetector(AnomalibDetector):
    model_name = "fre"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Fre")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        import timm

        cfg = self.config
        kwargs = self._backbone_kwargs(mode, layer_key="layer", single=True)
        layer = kwargs.get("layer", "layer3")
        probe = timm.create_model(kwargs["backbone"], pretrained=False, features_only=True)
        info = {i["module"]: i for i in probe.feature_info.info}
        if layer not in info:
            raise InvalidParams(f"{self.component}: backbone {cfg.backbone!r} has no layer {layer!r}; layers: {sorted(info)}")
        side = cfg.image_size // info[layer]["reduction"] // cfg.pooling_kernel_size
        return {**kwargs, "layer": layer, "pooling_kernel_size": cfg.pooling_kernel_size,
                "input_dim": int(info[layer]["num_chs"] * side * side), "latent_dim": cfg.latent_dim}


class SupersimplenetDetector(AnomalibDetector):
    model_name = "supersimplenet"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Supersimplenet")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        kwargs = self._backbone_kwargs(mode)
        kwargs.pop("pre_trained")
        if "layers" not in kwargs:
            kwargs["layers"] = ["layer2", "layer3"]
        return {**kwargs, "perlin_threshold": cfg.perlin_threshold, "adapt_cls_features": cfg.adapt_cls_features,
                "supervised": False}


class GanomalyDetector(AnomalibDetector):
    model_name = "ganomaly"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Ganomaly")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {"batch_size": cfg.batch_size, "n_features": cfg.n_features, "latent_vec_size": cfg.latent_vec_size,
                "extra_layers": cfg.extra_layers, "add_final_conv_layer": cfg.add_final_conv_layer,
                "wadv": cfg.wadv, "wcon": cfg.wcon, "wenc": cfg.wenc, "lr": cfg.lr}


class UflowDetector(AnomalibDetector):
    model_name = "uflow"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Uflow")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {"backbone": cfg.backbone, "flow_steps": cfg.flow_steps, "affine_clamp": cfg.affine_clamp,
                "affine_subnet_channels_ratio": cfg.affine_subnet_channels_ratio, "permute_soft": cfg.permute_soft}


class CsflowDetector(AnomalibDetector):
    model_name = "csflow"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Csflow")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {"cross_conv_hidden_channels": cfg.cross_conv_hidden_channels,
                "n_coupling_blocks": cfg.n_coupling_blocks, "clamp": cfg.clamp, "num_channels": 3}


class CfaDetector(AnomalibDetector):
    model_name = "cfa"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Cfa")

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {"backbone": cfg.backbone, "gamma_c": cfg.gamma_c, "gamma_d": cfg.gamma_d,
                "num_nearest_neighbors": cfg.num_nearest_neighbors,
                "num_hard_negative_features": cfg.num_hard_negative_features, "radius": cfg.radius}


class DraemDetector(AnomalibDetector):
    """DRAEM simulates anomalies from DTD textures (``dtd_dir``) or, with ``textures=False``,
    from Perlin noise alone."""

    model_name = "draem"

    def _anomalib_class(self) -> type:
        return _anomalib_model("Draem")

    def _build(self, mode: w.Mode) -> Any:
        cfg = self.config
        if mode == "load" and cfg.textures:
            if cfg.dtd_dir is None:
                raise MissingOfflineFile(
                    f"{self.component} simulates anomalies from the DTD textures (dtd-r1.0.1.tar.gz, "
                    "https://www.robots.ox.ac.uk/~vgg/data/dtd/), which are never downloaded here: "
                    "extract it and pass dtd_dir=FOLDER, or pass textures=False (Perlin noise only)"
                )
            if not Path(cfg.dtd_dir).is_dir():
                raise MissingOfflineFile(f"{self.component}: dtd_dir {cfg.dtd_dir} is not a folder")
        if cfg.textures and cfg.dtd_dir is not None and Path(cfg.dtd_dir).is_dir():
            return super()._build(mode)
        with tempfile.TemporaryDirectory(prefix="pyimgano-no-textures-") as empty:
            self._dtd_dir = empty
            return super()._build(mode)

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        dtd = cfg.dtd_dir if (cfg.textures and cfg.dtd_dir is not None) else self._dtd_dir
        return {"dtd_dir": dtd, "enable_sspcab": cfg.enable_sspcab, "sspcab_lambda": cfg.sspcab_lambda,
                "beta": (cfg.beta_min, cfg.beta_max)}


def _anomalib_cache(*parts: str) -> Path:
    from anomalib.utils.path import get_pretrained_weights_dir

    return get_pretrained_weights_dir().joinpath(*parts)


class DsrDetector(AnomalibDetector):
    """DSR needs anomalib's pretrained discrete model (``vq_weights``)."""

    model_name = "dsr"

    def _anomalib_class(self) -> type:
        base = _anomalib_model("Dsr")
        detector = self

        class OfflineDsr(base):  # type: ignore[misc, valid-type]
            def prepare_pretrained_model(self) -> Path:
                return detector._vq_weights_file()

        OfflineDsr.__name__ = "Dsr"
        return OfflineDsr

    def _vq_weights_file(self) -> Path:
        name = "vq_model_pretrained_128_4096.pckl"
        path = Path(self.config.vq_weights) if self.config.vq_weights else _anomalib_cache("dsr", name)
        if not path.is_file():
            raise MissingOfflineFile(
                f"{self.component} needs anomalib's pretrained discrete model {name} (from "
                "https://github.com/open-edge-platform/anomalib/releases, dsr_vq_model_pretrained.zip), "
                f"which is never downloaded here; not found at {path}. Pass vq_weights=FILE or put it there"
            )
        return path

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {"latent_anomaly_strength": cfg.latent_anomaly_strength,
                "upsampling_train_ratio": cfg.upsampling_train_ratio}

    def _fit(self, images: list[np.ndarray]) -> None:
        self._vq_weights_file()
        super()._fit(images)


class EfficientAdDetector(AnomalibDetector):
    """EfficientAD with a local teacher file and ImageNette folder, or no ImageNet penalty.

    Map-normalisation quantiles, which anomalib takes from its validation split, are taken
    from the training images.
    """

    model_name = "efficient_ad"

    def _teacher_file(self) -> Path:
        name = f"pretrained_teacher_{self.config.model_size}.pth"
        if self.config.teacher_weights:
            path = Path(self.config.teacher_weights)
        else:
            path = _anomalib_cache("efficientad_pretrained_weights", name)
        if not path.is_file():
            raise MissingOfflineFile(
                f"{self.component} needs the pretrained teacher {name} (in efficientad_pretrained_weights.zip of "
                "https://github.com/open-edge-platform/anomalib/releases), which is never downloaded here; "
                f"not found at {path}. Pass teacher_weights=FILE or put it there"
            )
        return path

    def _imagenet_dir(self) -> Path | None:
        if not self.config.imagenet_penalty:
            return None
        if self.config.imagenet_dir is None or not Path(self.config.imagenet_dir).is_dir():
            where = self.config.imagenet_dir or "(not given)"
            raise MissingOfflineFile(
                f"{self.component} trains its student with an ImageNet penalty on ImageNette "
                "(imagenette2.tgz, https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz), which is never "
                f"downloaded here; imagenet_dir={where} is not a folder. Extract it and pass imagenet_dir=FOLDER, "
                "or pass imagenet_penalty=False to train without the penalty"
            )
        return Path(self.config.imagenet_dir)

    def _anomalib_class(self) -> type:
        base = _anomalib_model("EfficientAd")
        detector = self

        class OfflineEfficientAd(base):  # type: ignore[misc, valid-type]
            def prepare_pretrained_model(self) -> None:
                state = read_state_dict(detector._teacher_file())
                self.model.teacher.load_state_dict(state)

            def prepare_imagenette_data(self, image_size: Any) -> None:
                if detector._imagenet_dir() is not None:
                    super().prepare_imagenette_data(image_size)

            def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
                if detector.config.imagenet_penalty:
                    return super().training_step(batch, *args, **kwargs)
                loss = detector._loss_without_penalty(self.model, batch.image)
                self.log("train_loss", loss.item(), on_epoch=True, logger=False)
                return {"loss": loss}

        OfflineEfficientAd.__name__ = "EfficientAd"
        return OfflineEfficientAd

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        cfg = self.config
        return {"imagenet_dir": cfg.imagenet_dir or "imagenette-not-given", "teacher_out_channels": cfg.teacher_out_channels,
                "model_size": cfg.model_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                "padding": cfg.padding, "pad_maps": cfg.pad_maps}

    @staticmethod
    def _loss_without_penalty(model: Any, images: torch.Tensor) -> torch.Tensor:
        """EfficientAD's training loss (hard student-teacher loss, auto-encoder losses)
        without the ImageNet penalty term."""
        _, distance_st = model.compute_student_teacher_distance(images)
        distance_st = distance_st.flatten()
        d_hard = torch.quantile(distance_st[: 2**24], 0.999)
        loss_hard = distance_st[distance_st >= d_hard].mean()
        augmented = model.choose_random_aug_image(images)
        ae_output = model.ae(augmented, images.shape[-2:])
        with torch.no_grad():
            teacher_output = model.teacher(augmented)
            if model.is_set(model.mean_std):
                teacher_output = (teacher_output - model.mean_std["mean"]) / model.mean_std["std"]
        student_ae = model.student(augmented)[:, model.teacher_out_channels :]
        loss_ae = ((teacher_output - ae_output) ** 2).mean()
        loss_stae = ((ae_output - student_ae) ** 2).mean()
        return loss_hard + loss_ae + loss_stae

    def _fit(self, images: list[np.ndarray]) -> None:
        self._teacher_file()
        self._imagenet_dir()
        super()._fit(images)

    def _after_training(self, module: Any, datamodule: Any) -> None:
        with torch.no_grad():
            module.eval()
            loader = datamodule.val_dataloader()
            module.model.quantiles.update(module.map_norm_quantiles(loader))
