"""Shared helpers every layer may use: constants, value conversions, errors, atomic file writes,
metric names, the palette. numpy and PIL only: no torch, Lightning, W&B or Hydra (tests/test_layers.py)."""
