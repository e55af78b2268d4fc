"""Models whose catalog entry says everything: the adapter builds them from the entry
(anomalib class, parameters passed through, backbone), so each is only a name here."""

from __future__ import annotations

from pyimgano_anomalib.adapter import AnomalibDetector


class PatchcoreDetector(AnomalibDetector):
    model_name = "patchcore"


class PadimDetector(AnomalibDetector):
    model_name = "padim"


class DfmDetector(AnomalibDetector):
    model_name = "dfm"


class FastflowDetector(AnomalibDetector):
    model_name = "fastflow"


class StfpmDetector(AnomalibDetector):
    model_name = "stfpm"


class ReverseDistillationDetector(AnomalibDetector):
    model_name = "reverse_distillation"


class CflowDetector(AnomalibDetector):
    model_name = "cflow"


class GanomalyDetector(AnomalibDetector):
    model_name = "ganomaly"


class UflowDetector(AnomalibDetector):
    model_name = "uflow"


class CsflowDetector(AnomalibDetector):
    model_name = "csflow"


class CfaDetector(AnomalibDetector):
    model_name = "cfa"


class PatchflowDetector(AnomalibDetector):
    model_name = "patchflow"


class UninetDetector(AnomalibDetector):
    model_name = "uninet"
