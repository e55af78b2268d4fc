"""anomalib models behind the pyimgano detector contract: the adapter every model shares.

``fit`` builds the anomalib lightning module named by the model's catalog entry (its
class, the parameters passed through, its backbone) and trains it with lightning's
``Trainer`` (anomalib's own training steps, optimisers and callbacks) on the given images,
on the CPU, with no logger, no checkpoints and lightning's folder in a temporary directory
(:mod:`pyimgano_anomalib.training`). Scoring calls the module's torch model in eval mode
and returns its raw ``pred_score`` and ``anomaly_map`` (no min-max normalisation, no
threshold), maps resized to each input image's size. The network input is one (height,
width) fixed at ``fit`` (``input_shape_``): ``image_size`` squared (``aspect="stretch"``,
anomalib's own), or about ``image_size`` squared pixels in the training images' aspect ratio
(``aspect="keep"``, sides rounded to a multiple of 32 by
:meth:`pyimgano.preprocess.Preprocess.resized_shape`); images of any other shape are resized
to it. ``save`` writes the module's state
dict as safetensors next to the JSON config; ``load`` rebuilds the module from the params
and loads it back (no pickle). Models with needs beyond the entry override the hooks in
their own modules (``draem``, ``dsr``, ``efficient_ad``, ``fre``, ``dfkde``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from pyimgano import Detector
from pyimgano.errors import InvalidParams, ModelLoadError, NotFittedError
from pyimgano.limits import ENV_MAX_IMAGE_PIXELS, ENV_MAX_STATE_BYTES, max_image_pixels, max_state_bytes
from pyimgano.modelfile import StateArray
from pyimgano.preprocess import Preprocess
from pyimgano.torchkit import offline_backbone, timm_name
from pyimgano.userfiles import confine
from pyimgano_anomalib import training
from pyimgano_anomalib import weights as w
from pyimgano_anomalib.catalog import ENTRIES, ModelEntry

STATE_FILE = "anomalib-model.safetensors"


def fitted_input_shape(config: Any, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """The network input (height, width) ``fit`` uses for training images of ``image_shape``:
    ``image_size`` squared, or with ``aspect="keep"`` about ``image_size`` squared pixels in
    their aspect ratio, each side a multiple of the model's ``input_multiple`` (32: the
    backbones' deepest stride)."""
    size = int(config.image_size)
    if config.aspect == "stretch":
        return size, size
    return Preprocess(resize=size, aspect="keep", multiple=config.input_multiple).resized_shape(image_shape)


def anomalib_class(name: str) -> type:
    """An anomalib lightning-module class by its name in ``anomalib.models``."""
    import anomalib.models as models

    return getattr(models, name)


class AnomalibDetector(Detector):
    """One anomalib model; subclasses name their catalog entry (``model_name``), which gives
    them their params model (validated into ``self.config`` by :class:`pyimgano.Detector`).

    The anomalib module is built from the parameters ``fit`` saw (``fit_config_``) at the
    network input ``fit`` fixed (``input_shape_``, (height, width)): a parameter changed
    afterwards (``set_params``) takes effect at the next ``fit``, and a saved detector reloads
    the module it was trained as.
    """

    model_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__dict__.get("model_name"):
            entry = ENTRIES[cls.model_name]
            cls.params_model = entry.params
            cls.component = f"anomalib:{entry.name}"
            cls.plugin = "anomalib"
        super().__init_subclass__(**kwargs)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.module_: Any = None
        self.fit_config_: Any = None
        self.input_shape_: tuple[int, int] | None = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def entry(cls) -> ModelEntry:
        return ENTRIES[cls.model_name]

    # -- building ---------------------------------------------------------------------
    def _anomalib_class(self) -> type:
        return anomalib_class(self.entry().anomalib_class)

    def _anomalib_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        """Constructor arguments of the anomalib module: the entry's backbone arguments,
        the parameters it passes through, its fixed arguments."""
        entry, cfg = self.entry(), self.config
        kwargs = self._backbone_kwargs(mode) if entry.backbone is not None else {}
        kwargs.update({name: getattr(cfg, name) for name in entry.passes})
        kwargs.update(entry.fixed)
        if entry.backbone is not None and offline_backbone(str(kwargs.get("backbone"))) is not None:
            kwargs.update({k: v for k, v in entry.lite0_args.items() if kwargs.get(k) is None})
        return kwargs

    def _build(self, mode: w.Mode) -> Any:
        """The anomalib lightning module, with our pre-processor and no post-processing."""
        cfg = self.config
        cls = self._anomalib_class()
        pre_processor = self._pre_processor(cls)
        if not getattr(cfg, "pre_trained", True):
            mode = "random"  # also for backbones anomalib always builds pre-trained (STFPM's teacher...)
        with w.offline_pretrained(self.component, mode, getattr(cfg, "weights", None)):
            return cls(
                pre_processor=pre_processor, post_processor=False, evaluator=False, visualizer=False,
                **self._anomalib_kwargs(mode),
            )

    def _network_input(self) -> tuple[int, int]:
        """The (height, width) the module is built for: ``input_shape_`` once fitted; before, the
        square ``image_size`` (``aspect="keep"`` takes it from the training images at fit)."""
        if self.input_shape_ is not None:
            return self.input_shape_
        if self.config.aspect == "keep":
            raise NotFittedError(f"{self.component}: with aspect='keep' the network input is fixed at fit; fit first")
        return self.config.image_size, self.config.image_size

    def _pre_processor(self, cls: type) -> Any:
        """anomalib's own pre-processor of the model, at the network input."""
        return cls.configure_pre_processor(image_size=self._network_input())

    def _backbone_kwargs(self, mode: w.Mode) -> dict[str, Any]:
        use, cfg = self.entry().backbone, self.config
        backbone = timm_name(cfg.backbone)
        out: dict[str, Any] = {"backbone": backbone}
        if use.pre_trained_arg:
            out["pre_trained"] = cfg.pre_trained and mode == "load"
        if use.layer_arg is None:
            return out
        layers = cfg.layers
        if layers is None and offline_backbone(backbone) is not None:
            layers = list(use.lite0_layers)
        if layers is not None:
            if use.layer_arg == "layer":
                if len(layers) != 1:
                    raise InvalidParams(f"{self.component}: layers must name exactly one layer, got {layers}")
                out["layer"] = layers[0]
            else:
                out[use.layer_arg] = list(layers)
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

    def _check_files(self) -> None:
        """Raise :class:`MissingOfflineFile` at once when a file the model needs is absent."""

    def _fit_input_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int]:
        """The network input for training images of ``image_shape``; :class:`InvalidParams` when a
        side of the aspect-kept input is below the model's minimum (with the image_size that fits)."""
        cfg = self.config
        shape = fitted_input_shape(cfg, image_shape)
        if min(shape) >= cfg.min_input_side:
            return shape
        enough = next((n for n in range(cfg.image_size, 2049)
                       if min(fitted_input_shape(cfg.model_copy(update={"image_size": n}), image_shape))
                       >= cfg.min_input_side), None)
        hint = f"; image_size={enough} or more gives one" if enough is not None else ""
        raise InvalidParams(
            f"{self.component}: aspect='keep' at image_size={cfg.image_size} makes a {shape[0]}x{shape[1]} network "
            f"input for {image_shape[0]}x{image_shape[1]} training images, but the model needs each side at least "
            f"{cfg.min_input_side} px{hint}"
        )

    def _fit(self, images: list[np.ndarray]) -> None:
        self._train(images)

    def _train(self, images: list[np.ndarray], anomalies: list[np.ndarray] | None = None,
               masks: list[np.ndarray] | None = None) -> None:
        """Build the module and train it on the normal ``images`` (and, for a model that learns
        from them, labelled ``anomalies`` with their ``masks``)."""
        self._check_training_set(images)
        self._check_files()
        import lightning

        training.quiet_lightning()
        shape = self._fit_input_shape(images[0].shape)
        cfg = self.fit_config_ = self.config.model_copy()
        self.input_shape_ = shape
        lightning.seed_everything(cfg.seed, workers=True, verbose=False)
        start = time.perf_counter()
        module = self._build("load")
        datamodule = training.make_datamodule(images, shape, cfg.batch_size, cfg.eval_batch_size, anomalies, masks)
        with training.lightning_dir(cfg.work_dir) as root:
            trainer = lightning.Trainer(**training.trainer_arguments(module, cfg, root))
            trainer.fit(module, datamodule=datamodule)
        self._after_training(module, datamodule)
        module.eval()
        self.module_ = module
        self.fit_info_ = {
            "fit_s": time.perf_counter() - start,
            "epochs": int(trainer.current_epoch),
            "steps": int(trainer.global_step),
            "input_shape": shape,
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
        cfg = self.fit_config_
        transform = module.pre_processor.transform if module.pre_processor is not None else None
        scores: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(images), cfg.eval_batch_size):
                chunk = images[start : start + cfg.eval_batch_size]
                batch = torch.stack([training.to_tensor(img, self.input_shape_) for img in chunk])
                if transform is not None:
                    batch = transform(batch)
                out = module.model(batch)
                scores.append(out.pred_score.detach().reshape(len(chunk)).double().cpu().numpy())
                if self.supports_maps and out.anomaly_map is not None:
                    raw = out.anomaly_map.detach().float()
                    raw = raw.reshape(len(chunk), 1, *raw.shape[-2:])
                    for img, one in zip(chunk, raw):
                        resized = F.interpolate(one[None], size=img.shape[:2], mode="bilinear", align_corners=False)
                        maps.append(resized[0, 0].numpy().astype(np.float32))
        score_array = np.concatenate(scores)
        if not maps:
            return score_array, None
        if len({m.shape for m in maps}) == 1:
            return score_array, np.stack(maps)
        return score_array, maps

    # -- persistence ------------------------------------------------------------------
    state_arrays: ClassVar[dict[str, StateArray]] = {
        "anomalib_state_in": StateArray("str", (1,), required=False),
        "anomalib_fit_params": StateArray("str", (1,), required=False),
        "anomalib_input_shape": StateArray("int", (2,), required=False),  # absent in older saves: square
    }

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"anomalib_state_in": np.array([STATE_FILE]),
                "anomalib_fit_params": np.array([self.fit_config_.model_dump_json()]),
                "anomalib_input_shape": np.array(self.input_shape_, dtype=np.int64)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._state_file = str(state["anomalib_state_in"][0]) if "anomalib_state_in" in state else STATE_FILE
        fitted = state.get("anomalib_fit_params")
        self.fit_config_ = self.config.model_copy() if fitted is None else self.params_model.model_validate_json(
            str(fitted[0]))
        shape = state.get("anomalib_input_shape")
        side = int(self.fit_config_.image_size)
        height, width = (side, side) if shape is None else (int(shape[0]), int(shape[1]))
        if min(height, width) < 1 or height * width > max_image_pixels():
            raise ModelLoadError(f"{self.component}: saved network input {height}x{width} is not a usable image size "
                                 f"(sides of at least 1, at most {max_image_pixels():,} pixels: {ENV_MAX_IMAGE_PIXELS})")
        self.input_shape_ = (height, width)

    def _save_files(self, directory: Path) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.module_.state_dict().items()}
        save_file(tensors, str(directory / STATE_FILE), metadata={"detector": self.component})

    def _load_files(self, directory: Path) -> None:
        from safetensors.torch import load_file

        # the file name comes from the saved state: kept inside the model folder, and bounded
        # like any model state before safetensors reads it
        path = confine(directory, getattr(self, "_state_file", STATE_FILE), f"{directory}: {self.component}",
                       ModelLoadError, "weights file")
        if not path.is_file():
            raise ModelLoadError(f"{directory}: {self.component} model weights {path.name} are missing")
        size, limit = path.stat().st_size, max_state_bytes()
        if size > limit:
            raise ModelLoadError(f"{path}: {size:,} bytes of model weights, above the limit of {limit:,} bytes "
                                 f"({ENV_MAX_STATE_BYTES}); refused")
        current, self.config = self.config, self.fit_config_  # the module as it was trained
        try:
            module = self._build("random")
        finally:
            self.config = current
        state = load_file(str(path))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"{path}: does not fit {self.component} with the saved parameters: {exc}") from None
        module.eval()
        self.module_ = module
