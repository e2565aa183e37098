"""kgmrc: fusion."""
