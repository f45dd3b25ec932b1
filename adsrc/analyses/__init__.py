"""Analyses of a normalised kernel: types, effects, activity, recomputation, to-be-recorded."""
