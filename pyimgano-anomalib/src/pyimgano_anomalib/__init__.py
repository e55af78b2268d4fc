"""pyimgano plugin: anomalib models behind the pyimgano detector contract."""
