"""kgmrc: retrieval."""
