"""nnpm's self-hosted registry: a FastAPI app over a metadata database and a blob store.

Build one with `registry_server.app.create_app(ServerSettings(...))`; run one with
`python -m registry_server --data DIR` or `nnpm registry serve`.
"""
