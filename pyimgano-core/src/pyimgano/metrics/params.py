"""Parameter models of the metrics: light (pydantic only), so registration imports them freely.

A metric's defaults live here once: the functions take them as their keyword defaults,
and the benchmark calls every registered metric with its params model's defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuproParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    fpr_limit: float = Field(0.3, gt=0.0, le=1.0, description="integrate the PRO curve up to this FPR")


DEFAULT_FPR_LIMIT: float = AuproParams.model_fields["fpr_limit"].default
