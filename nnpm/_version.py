"""The nnpm release, in one place (pyproject reads it; nothing inside nnpm imports the package façade for it)."""

__version__ = "0.2.0"
