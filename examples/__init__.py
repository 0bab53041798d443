"""Example nnpm packages, built from source by ``python -m examples.build OUTDIR``.

Nothing here is downloaded: ResNet-18 gets seeded random weights and the digits
classifier is trained on scikit-learn's bundled copy of the UCI digits data.
"""
