"""Transformations of an analysed kernel into derivative code (reverse mode for now)."""
