"""File input/output that must not lie or run code: atomic writes, provenance and hashes, safe checkpoints."""
