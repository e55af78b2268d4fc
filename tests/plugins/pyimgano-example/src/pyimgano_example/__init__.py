"""An example third-party pyimgano plugin (used by pyimgano's own tests)."""
