"""Judging rendered faces: preprocessing, crops and classifiers (see LAYOUT.md)."""
