"""kgmrc: mrc."""
