"""kgmrc: kg."""
