"""Files anomalib would download, as data: which file, where to get it, where to put it,
which parameter points at it (light module: no torch, no anomalib).

:func:`offline_files` lists them (``pyimgano anomalib-files`` prints them);
:func:`missing_file` builds the error a detector raises at once when one is absent.
Nothing here downloads anything.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyimgano_anomalib.errors import MissingOfflineFile

_RELEASES = "https://github.com/open-edge-platform/anomalib/releases/download"
_TORCHVISION = "https://download.pytorch.org/models"


@dataclass(frozen=True)
class OfflineFile:
    """One file (or folder) a model needs that anomalib would fetch at run time."""

    model: str
    key: str
    what: str
    file: str
    source: str
    parameter: str
    place: str | None = None
    alternative: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "place": self.resolved_place()}

    def resolved_place(self) -> str | None:
        """``place`` with the cache folders of this machine filled in."""
        if self.place is None:
            return None
        return self.place.format(anomalib_cache=anomalib_cache(), torch_cache=torch_checkpoints())


_TORCH_PLACE = "{torch_cache}"
_TV_ALTERNATIVE = "pre_trained=False: a random backbone (runs, but only for tests: accuracy needs the weights)"

FILES: tuple[OfflineFile, ...] = (
    OfflineFile(
        "efficient_ad", "teacher", "pretrained PDN teacher",
        "pretrained_teacher_small.pth (model_size='small') or pretrained_teacher_medium.pth, "
        "inside efficientad_pretrained_weights.zip",
        f"{_RELEASES}/efficientad_pretrained_weights/efficientad_pretrained_weights.zip",
        "teacher_weights=FILE", "{anomalib_cache}/efficientad_pretrained_weights",
    ),
    OfflineFile(
        "efficient_ad", "imagenette", "ImageNette images for the student's ImageNet penalty",
        "imagenette2.tgz, extracted (a folder of JPEG images)",
        "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
        "imagenet_dir=FOLDER", None, "imagenet_penalty=False: train without the penalty term (lower accuracy)",
    ),
    OfflineFile(
        "dsr", "vq", "pretrained discrete latent (VQ) model",
        "vq_model_pretrained_128_4096.pckl, inside dsr_vq_model_pretrained.zip",
        f"{_RELEASES}/dsr_pretrained_weights/dsr_vq_model_pretrained.zip",
        "vq_weights=FILE", "{anomalib_cache}/dsr",
    ),
    OfflineFile(
        "draem", "dtd", "DTD texture images for simulated anomalies",
        "dtd-r1.0.1.tar.gz, extracted (dtd/images/...)",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        "dtd_dir=FOLDER", None, "textures=False: simulated anomalies from Perlin noise only",
    ),
    OfflineFile(
        "glass", "dtd", "DTD texture images for simulated anomalies (optional)",
        "dtd-r1.0.1.tar.gz, extracted (dtd/images/...)",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        "anomaly_source_path=FOLDER", None, "anomaly_source_path=None (the default): Perlin noise only",
    ),
    OfflineFile(
        "supersimplenet", "backbone", "ImageNet weights of Wide-ResNet-50-2 (torchvision V1, timm 'tv_in1k')",
        "wide_resnet50_2-95faca4d.pth (torchvision IMAGENET1K_V1), or timm's wide_resnet50_2.tv_in1k",
        f"{_TORCHVISION}/wide_resnet50_2-95faca4d.pth", "weights=FILE", None,
        "backbone='efficientnet_lite0': offline, but SuperSimpleNet learns little from it (docs/anomalib.md)",
    ),
    OfflineFile(
        "cfa", "backbone", "torchvision ImageNet weights of the backbone",
        "wide_resnet50_2-9ba9bcbe.pth (backbone='wide_resnet50_2'), resnet18-f37072fd.pth or vgg19_bn-c79401a0.pth",
        f"{_TORCHVISION}/wide_resnet50_2-9ba9bcbe.pth", "weights=FILE", _TORCH_PLACE, _TV_ALTERNATIVE,
    ),
    OfflineFile(
        "csflow", "backbone", "torchvision ImageNet weights of EfficientNet-B5",
        "efficientnet_b5_lukemelas-1a07897c.pth", f"{_TORCHVISION}/efficientnet_b5_lukemelas-1a07897c.pth",
        "weights=FILE", _TORCH_PLACE, _TV_ALTERNATIVE,
    ),
    OfflineFile(
        "uninet", "backbone", "torchvision ImageNet weights of the teacher backbone",
        "wide_resnet50_2-9ba9bcbe.pth (teacher_backbone='wide_resnet50_2') or resnet50-11ad3fa6.pth",
        f"{_TORCHVISION}/wide_resnet50_2-9ba9bcbe.pth", "weights=FILE", _TORCH_PLACE, _TV_ALTERNATIVE,
    ),
)


def files_of(model: str) -> tuple[OfflineFile, ...]:
    """The files one model needs (empty when it needs none beyond its backbone)."""
    return tuple(f for f in FILES if f.model == model)


def offline_files(model: str | None = None) -> list[dict[str, Any]]:
    """Every file (or one model's) as plain dicts, cache folders resolved for this machine."""
    chosen = FILES if model is None else files_of(model)
    return [f.as_dict() for f in chosen]


def format_offline_files(model: str | None = None) -> str:
    """The guidance as text: one block per file (what ``pyimgano anomalib-files`` prints)."""
    lines = [
        "Files anomalib models would download (pyimgano never downloads them).",
        "Backbone models default to the offline EfficientNet-Lite0 (SuperSimpleNet: see below); other timm backbones take",
        "weights=FILE (a state dict) or its file in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}).",
        "",
    ]
    for f in FILES if model is None else files_of(model):
        lines += [f"anomalib:{f.model}  {f.what}", f"  file:      {f.file}", f"  fetch:     {f.source}",
                  f"  pass:      {f.parameter}"]
        if f.place:
            lines.append(f"  or put in: {f.resolved_place()}")
        if f.alternative:
            lines.append(f"  without:   {f.alternative}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def missing_file(model: str, key: str, looked_at: str | os.PathLike | None) -> MissingOfflineFile:
    """The error for one absent file: what it is, where it was looked for, how to provide it."""
    f = next(x for x in FILES if x.model == model and x.key == key)
    where = f"not found at {looked_at}" if looked_at else "none given"
    parts = [f"anomalib:{model} needs the {f.what}: {f.file} ({where}); it is never downloaded here.",
             f"Fetch {f.source} and pass {f.parameter}"]
    if f.place:
        parts[-1] += f" or put it in {f.resolved_place()}"
    if f.alternative:
        parts.append(f"or pass {f.alternative}")
    return MissingOfflineFile("; ".join(parts))


def anomalib_cache() -> Path:
    """anomalib's folder of pre-trained files (``anomalib.utils.path.get_pretrained_weights_dir``)."""
    import platformdirs

    return platformdirs.user_cache_path("anomalib") / "pre_trained"


def torch_checkpoints() -> Path:
    """torch's hub cache ``checkpoints`` folder (``torch.hub.get_dir()``), found without torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"
