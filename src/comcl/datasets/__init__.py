"""Readers and writers for the public on-disk formats of the datasets."""
