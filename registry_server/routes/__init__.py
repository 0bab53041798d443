"""HTTP routes: thin shells that parse a request, call a service and shape the answer."""
