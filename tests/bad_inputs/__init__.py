"""The bad-input corpus (files and expected messages) and its synthetic raster maker."""
