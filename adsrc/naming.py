"""Fresh names for generated variables.

User kernels may not use names that start with ``_`` (the fence rejects them), so every generated
temporary is ``_<prefix><k>`` and can never collide with a user name.  A user variable split into
several (see :mod:`adsrc.normalize.webs`) keeps a readable name instead, ``<name>_<k>``, chosen
among the names its kernel does not use; a user name never ends in ``_bar`` or ``_dot``, so the
adjoint and tangent names made from it cannot collide either.
"""

import itertools


class Namer:
    def __init__(self):
        self._counters = {}

    def fresh(self, prefix):
        counter = self._counters.setdefault(prefix, itertools.count())
        return f"_{prefix}{next(counter)}"


def variant(name, taken):
    """``name_2``, ``name_3``, ...: the first not in ``taken``."""
    return next(f"{name}_{k}" for k in itertools.count(2) if f"{name}_{k}" not in taken)


def free(name, taken):
    """``name`` itself if it is not in ``taken``, else its first :func:`variant` that is not."""
    return name if name not in taken else variant(name, taken)
