"""nnpm: a package manager and registry for neural networks.

    import nnpm
    model = nnpm.load("resnet18")
    logits = model(x)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "Model", "__version__"]

if TYPE_CHECKING:
    from nnpm.runtime import Model


def load(spec: str, **kwargs: Any) -> "Model":
    """Load an installed package (name, name==version, folder or .nnpm file) as a runnable Model."""
    from nnpm.runtime import load as _load

    return _load(spec, **kwargs)


def __getattr__(name: str) -> Any:
    # Model lives with onnxruntime; import it only when someone asks for it.
    if name == "Model":
        from nnpm.runtime import Model

        return Model
    raise AttributeError(f"module 'nnpm' has no attribute {name!r}")
