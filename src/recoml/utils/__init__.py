"""Small shared helpers: provenance, entry-point plumbing, configs as plain dicts."""
