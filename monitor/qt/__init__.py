"""Thin Qt adapters over the application layer: pipeline callbacks become Qt signals, nothing else."""
