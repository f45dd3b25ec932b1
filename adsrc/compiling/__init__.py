"""Compile and cache: generated Cython modules built once, loaded from an on-disk cache."""
