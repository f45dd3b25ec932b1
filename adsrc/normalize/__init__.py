"""Normalisation: rewrite a fenced kernel into the small core language the analyses expect.

After normalisation a kernel contains only: single-target assignments to a name or to one array
element (every index a scalar), top-level allocations of local arrays, calls of user kernels as
statements or as the whole right-hand side, ``for`` over ``range``, ``while``, ``if``, ``break``
as the last statement of a branch, shape assertions, and a final ``return _ret``.
"""
