"""Model files (registry, resolution, download) and their ONNX Runtime wrappers."""
