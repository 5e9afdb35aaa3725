"""activate layer."""
