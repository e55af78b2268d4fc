"""pyimgano plugin: anomalib models behind the pyimgano detector contract (see docs/anomalib.md)."""

from pyimgano_anomalib.errors import MissingOfflineFile

__all__ = ["MissingOfflineFile"]
