"""pyimgano plugin: Native PatchCore and kNN detectors for pyimgano (torch backbones, greedy coreset, faiss search)."""
