"""Fresh names for generated variables.

User kernels may not use names that start with ``_`` (the fence rejects them), so every generated
temporary is ``_<prefix><k>`` and can never collide with a user name.
"""

import itertools


class Namer:
    def __init__(self):
        self._counters = {}

    def fresh(self, prefix):
        counter = self._counters.setdefault(prefix, itertools.count())
        return f"_{prefix}{next(counter)}"
