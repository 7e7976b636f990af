"""Reversible stages: each class has ``encode`` (edge) and ``decode`` (cloud) side by side."""
