"""Process-wide CLI state set while a command runs."""

verbose = False
warnings: list[str] = []   # printed on stderr after a command that succeeded (a failure prints one line only)
