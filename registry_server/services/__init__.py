"""What the registry does, without HTTP: catalog reads, publish, owners, users and tokens, model validation.

No module here imports FastAPI; routes call them."""
