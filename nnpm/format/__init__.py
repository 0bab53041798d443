"""The package format that client and server share: fields, nnpm.toml, manifest.json, packuments, specs,
limits, safety rules, graph reading, pipeline wiring and archives. Nothing here does HTTP or runs a model."""
