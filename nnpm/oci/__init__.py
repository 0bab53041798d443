"""The room: nnpm packages in OCI registries (ModelPack artifacts): references, transport, push, pull, index."""
