"""pyimgano plugin: Data sets for pyimgano: MVTec AD, VisA, BTAD, custom folders and an offline synthetic set."""
