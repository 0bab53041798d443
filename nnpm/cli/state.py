"""Process-wide CLI flags set by the root callback."""

verbose = False
