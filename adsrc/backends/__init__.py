"""Backends: print generated trees as source and load them."""
