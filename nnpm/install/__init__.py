"""Installing: resolve versions, fetch blobs into the store, link them into environments, record the lock."""
