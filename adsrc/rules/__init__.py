"""Derivative rules: each derivative adsrc knows is written once, here."""
