"""nnpm: a package manager and registry for neural networks.

    import nnpm
    model = nnpm.load("resnet18")
    logits = model(x)

This module is the public face only; nothing inside nnpm imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nnpm._version import __version__

__all__ = ["load", "Model", "__version__"]

if TYPE_CHECKING:
    from nnpm.runtime.model import Model


def load(spec: str, **kwargs: Any) -> "Model":
    """Load a package (name, name==version, folder or .nnpm file) as a runnable Model."""
    from nnpm.runtime.load import load as _load

    return _load(spec, **kwargs)


def __getattr__(name: str) -> Any:
    # Model lives with onnxruntime; import it only when someone asks for it.
    if name == "Model":
        from nnpm.runtime.model import Model

        return Model
    raise AttributeError(f"module 'nnpm' has no attribute {name!r}")
