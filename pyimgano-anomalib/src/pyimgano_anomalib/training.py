"""Training machinery shared by every adapter: images as an anomalib data module, the
lightning ``Trainer`` arguments, and the callbacks that keep runs seeded and quiet.

The data module serves in-memory normal images as anomalib ``ImageItem`` objects, shuffled
from the global torch generator as anomalib's own data modules are, so that a run seeded
like an ``Engine`` run draws the same batches.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

IGNORED_TRAINER_ARGUMENTS = frozenset({"devices", "max_epochs", "val_check_interval", "check_val_every_n_epoch"})
"""Keys of anomalib's ``trainer_arguments`` the plugin sets itself (budget, device, no validation)."""


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


Shape = tuple[int, int]
"""The network input (height, width) every image is resized to."""


def to_tensor(image: np.ndarray, shape: Shape) -> torch.Tensor:
    """HxWx3 uint8 -> 3 x height x width float in [0, 1], converted as anomalib's ``read_image``
    (bit for bit) and resized as its pre-processor does."""
    uint8 = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    tensor = TF.to_dtype(uint8, torch.float32, scale=True)
    if tuple(tensor.shape[-2:]) != tuple(shape):
        tensor = TF.resize(tensor, list(shape), antialias=True)
    return tensor


class _Images(torch.utils.data.Dataset):
    """In-memory normal images as anomalib ``ImageItem`` objects (label 0)."""

    def __init__(self, images: list[np.ndarray], shape: Shape) -> None:
        self.tensors = [to_tensor(img, shape) for img in images]

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index: int) -> Any:
        from anomalib.data.dataclasses.torch import ImageItem

        return ImageItem(image=self.tensors[index], gt_label=torch.tensor(0), image_path=f"image-{index}")


class _LabelledImages(torch.utils.data.Dataset):
    """Normal images and a few labelled defective ones, every item with its label and mask.

    Each defective image is served in four orientations (as it is, flipped vertically,
    flipped horizontally, turned 180 degrees), repeated so that defective items are about as
    many as the normal ones: each epoch then sees every normal image once and the defects as
    often, as the balanced batches of SuperSimpleNet's supervised training do (there, normal
    images are sub-sampled to the number of defective ones instead).
    """

    ORIENTATIONS = 4

    def __init__(self, images: list[np.ndarray], anomalies: list[np.ndarray], masks: list[np.ndarray], shape: Shape
                 ) -> None:
        zeros = torch.zeros(tuple(shape), dtype=torch.bool)
        self.items = [(to_tensor(img, shape), zeros, 0) for img in images]
        defects = [(to_tensor(img, shape), mask_tensor(mask, shape)) for img, mask in zip(anomalies, masks)]
        oriented = [(_orient(t, k), _orient(m, k)) for t, m in defects for k in range(self.ORIENTATIONS)]
        repeats = max(1, round(len(images) / len(oriented)))
        self.items += [(t, m, 1) for _ in range(repeats) for t, m in oriented]
        self.n_defective = repeats * len(oriented)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        from anomalib.data.dataclasses.torch import ImageItem

        image, mask, label = self.items[index]
        return ImageItem(image=image, gt_label=torch.tensor(label), gt_mask=mask, image_path=f"image-{index}")


def _orient(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """0: as it is; 1: flipped vertically; 2: horizontally; 3: turned 180 degrees."""
    dims = {0: (), 1: (-2,), 2: (-1,), 3: (-2, -1)}[k]
    return torch.flip(tensor, dims) if dims else tensor


def mask_tensor(mask: np.ndarray, shape: Shape) -> torch.Tensor:
    """An HxW bool mask at ``shape`` (height, width) (area-weighted, then cut at half a pixel)."""
    tensor = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
    if tuple(tensor.shape[-2:]) != tuple(shape):
        tensor = TF.resize(tensor, list(shape), antialias=True)
    return tensor[0] >= 0.5


def make_datamodule(images: list[np.ndarray], shape: Shape, batch_size: int, eval_batch_size: int,
                    anomalies: list[np.ndarray] | None = None, masks: list[np.ndarray] | None = None) -> Any:
    """A lightning data module over in-memory images at ``shape``; ``val_dataloader`` serves the same
    normal images (models such as EfficientAD and CFA read ``trainer.datamodule``).
    ``anomalies`` with their ``masks``: labelled defective images join the training set
    (:class:`_LabelledImages`)."""
    import lightning
    from anomalib.data.dataclasses.torch import ImageBatch

    dataset: torch.utils.data.Dataset = _Images(images, shape)
    train_set = dataset if anomalies is None else _LabelledImages(images, anomalies, masks, shape)

    class InMemoryDataModule(lightning.LightningDataModule):
        name = "pyimgano"
        category = ""

        def __init__(self) -> None:
            super().__init__()
            self.train_batch_size = min(batch_size, len(train_set))
            self.eval_batch_size = eval_batch_size
            self.train_data = train_set

        def train_dataloader(self) -> torch.utils.data.DataLoader:
            return torch.utils.data.DataLoader(
                train_set, batch_size=self.train_batch_size, shuffle=True, drop_last=False,
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
def lightning_dir(work_dir: str | None) -> Iterator[Path]:
    """``work_dir``, or a temporary folder removed afterwards: lightning writes nowhere else."""
    if work_dir is not None:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="pyimgano-anomalib-") as tmp:
        yield Path(tmp)


def trainer_arguments(module: Any, config: Any, root: Path) -> dict[str, Any]:
    """lightning ``Trainer`` arguments: the model's own (``trainer_arguments``: gradient
    clipping...), the budget from ``config``, the CPU, no logger, checkpoint or validation."""
    args = {k: v for k, v in module.trainer_arguments.items() if k not in IGNORED_TRAINER_ARGUMENTS}
    args.update(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(root), max_epochs=config.max_epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1, num_sanity_val_steps=0,
        limit_val_batches=0, deterministic=False, callbacks=[reseed_before_memory_bank(config.seed)],
    )
    if config.time_limit_s is not None:
        args["max_time"] = {"seconds": float(config.time_limit_s)}
    return args
