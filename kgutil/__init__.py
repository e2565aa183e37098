"""Small helpers shared by every package (no project imports)."""
