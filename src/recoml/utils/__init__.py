"""Small shared helpers: provenance, entry-point plumbing."""
