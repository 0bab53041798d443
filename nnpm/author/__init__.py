"""Author tools: start a package from an ONNX file (init), validate and pack it (pack), publish it (publish)."""
