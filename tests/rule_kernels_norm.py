"""A kernel calling np.linalg.norm, for a user's rule of it declared in a new process
(tests/test_rules.py)."""

import numpy as np


def norm_of(x):
    return np.linalg.norm(x)
