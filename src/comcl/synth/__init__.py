"""Synthetic datasets written in the public on-disk formats of the real ones."""
