"""Thalweg's Processing provider (``thalweg``) and its algorithms, one module each."""
