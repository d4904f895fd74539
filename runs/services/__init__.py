"""Workflows over the storage layer: purge, the history generator, ingest, import/export."""
