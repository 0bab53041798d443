"""HTTP routes: the JSON API (blobs, packages) and the HTML pages."""
