"""Running installed packages on onnxruntime: models, inputs, loading by spec, pipelines and their fusion."""
