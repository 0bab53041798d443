"""The room: an application's project file, its committed lock, and its `.nnpm/` environment."""
