"""Layers: extract.py (a QGIS layer -> the network of a job), results.py (result layers: load, style, time)."""
