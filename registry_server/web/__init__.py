"""The registry's web pages: templates, static files, and how pages are drawn (render)."""
