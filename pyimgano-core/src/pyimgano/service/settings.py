"""The settings of ``pyimgano serve`` and ``pyimgano watch``: each default, bound and help
text is written once, on a pydantic field; the command-line options are built from them
(``pyimgano.cli.options.add_model_options``)."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyimgano.errors import InvalidParams, validation_problems

API_KEY_ENV = "PYIMGANO_API_KEY"


class ServeSettings(BaseModel):
    """How ``pyimgano serve`` batches and what it accepts."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(8, ge=1, le=256, description="images scored together at most (one batch)")
    batch_window_ms: float = Field(5.0, ge=0, le=10_000,
                                   description="how long the first request of a batch waits for others, in ms")
    max_queue: int = Field(64, ge=1, le=4096,
                           description="images waiting to be scored at most; beyond, requests get 503 at once")
    max_images: int = Field(16, ge=1, le=256, description="images per request at most")
    max_body_mb: float = Field(32.0, gt=0, le=4096, description="request body size at most, in MiB")
    timeout_s: float = Field(30.0, gt=0, le=3600,
                             description="a request (its upload, its wait and its scoring) ends after this many "
                                         "seconds with 408 or 504; SIGTERM waits as long for accepted requests")
    max_connections: int = Field(256, ge=1, le=65536,
                                 description="open connections at most; beyond, new ones get 503")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class WatchSettings(BaseModel):
    """How ``pyimgano watch`` decides that a file is complete and how it batches."""

    model_config = ConfigDict(extra="forbid")

    settle_s: float = Field(1.0, ge=0, le=3600,
                            description="a file is read once its size and time stamp have not changed for this "
                                        "many seconds (a file still being written is left alone)")
    poll_s: float = Field(0.5, gt=0, le=3600, description="how often the folder is looked at, in seconds")
    max_batch: int = Field(8, ge=1, le=256, description="images scored together at most")


def settings_from_args(model: type[BaseModel], args: argparse.Namespace) -> Any:
    """The settings of ``model`` from options made by ``cli.options.add_model_options`` (those
    not given keep the field's default); a bad value is one line naming the field."""
    from pyimgano.cli.options import given_settings

    values = given_settings(args, model)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidParams(validation_problems(exc, model, values=values)) from None
