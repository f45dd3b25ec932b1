"""Gradient of a compliance through a sparse direct solve: K(p) u = f, loss f^T u.

The stiffness matrix is assembled inside the kernel from a stiffness per element (a spring
between two nodes), then solved with ``adsrc.sparse.spsolve``.  adsrc differentiates the
assembly loop by source transformation and the solve by its rule: one sparse LU factorisation,
reused for the one transposed solve of the adjoint, and the matrix adjoint only on the nonzeros.

The gradient has a closed form, d(f^T u)/dp_e = -u_e^T K_e u_e = -(u_a - u_b)^2 for the element
joining nodes a and b, which the script checks, on a 1-D bar and on a 2-D grid of springs with
thousands of unknowns.  It also times the gradient against the solve alone.

    python examples/sparse_compliance.py
"""

import itertools
import time

import numpy as np
import scipy.sparse as sp

import adsrc
from adsrc.sparse import spsolve


def compliance(stiffness, element_entries, diagonal, ground, indices, indptr, f, data, u):
    """Assemble K = ground * I + sum_e stiffness[e] * K_e into ``data`` (CSR values on the
    pattern ``indices``/``indptr``), solve K u = f, return f^T u.

    ``element_entries[e]`` holds the positions in ``data`` of the entries (a, a), (a, b),
    (b, a), (b, b) of the element's nodes a and b (-1 for a fixed node); ``diagonal[i]`` the
    position of (i, i).  The springs to the ground keep K well conditioned."""
    for k in range(len(data)):
        data[k] = 0.0
    for i in range(len(diagonal)):
        data[diagonal[i]] = ground
    for e in range(len(stiffness)):
        for corner in range(4):
            position = element_entries[e, corner]
            if position >= 0:
                if corner == 0 or corner == 3:
                    data[position] += stiffness[e]
                else:
                    data[position] -= stiffness[e]
    u[:] = spsolve(data, indices, indptr, f)
    return np.dot(f, u)


class SpringNetwork:
    """Nodes ``0..n-1`` joined by elements ``(a, b)`` (``a = -1``: fixed to the ground): the
    CSR pattern of K and where each element's entries go."""

    def __init__(self, nodes, elements):
        self.nodes = nodes
        self.elements = np.asarray(elements)
        free = self.elements[(self.elements >= 0).all(axis=1)]
        rows = np.concatenate([np.arange(nodes), free[:, 0], free[:, 1]])
        cols = np.concatenate([np.arange(nodes), free[:, 1], free[:, 0]])
        pattern = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(nodes, nodes))
        pattern.sum_duplicates()
        pattern.sort_indices()
        self.indices = pattern.indices.astype(np.int64)
        self.indptr = pattern.indptr.astype(np.int64)
        self.diagonal = np.array([self._position(i, i) for i in range(nodes)], dtype=np.int64)
        self.entries = np.array([[self._position(a, a), self._position(a, b),
                                  self._position(b, a), self._position(b, b)]
                                 for a, b in self.elements], dtype=np.int64)

    def _position(self, i, j):
        if i < 0 or j < 0:
            return -1
        start = self.indptr[i]
        row = self.indices[start:self.indptr[i + 1]]
        return int(start + np.searchsorted(row, j))

    def arguments(self, stiffness, ground, f):
        """The kernel's arguments, with fresh ``data`` and ``u``."""
        return [stiffness, self.entries, self.diagonal, ground, self.indices, self.indptr, f,
                np.zeros(len(self.indices)), np.zeros(self.nodes)]

    def closed_form_gradient(self, u):
        """-u_e^T K_e u_e per element."""
        values = np.concatenate([u, [0.0]])            # index -1: the fixed node
        a, b = self.elements[:, 0], self.elements[:, 1]
        return -(values[a] - values[b]) ** 2


def bar(n):
    """A 1-D bar of n springs, node 0 fixed."""
    return SpringNetwork(n, [(e - 1, e) for e in range(n)])


def grid(side):
    """A side x side grid of nodes joined by horizontal and vertical springs, its left column
    fixed by springs to the wall."""
    node = np.arange(side * side).reshape(side, side)
    elements = [(node[i, j], node[i, j + 1]) for i in range(side) for j in range(side - 1)]
    elements += [(node[i, j], node[i + 1, j]) for i in range(side - 1) for j in range(side)]
    elements += [(-1, node[i, 0]) for i in range(side)]
    return SpringNetwork(side * side, elements)


def best_of(repeats, run):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    gradient = adsrc.value_and_grad(compliance, wrt="stiffness")
    print(f"{'problem':>14} {'unknowns':>9} {'elements':>9} {'max rel. error':>15} "
          f"{'solve ms':>9} {'gradient ms':>12} {'ratio':>6}")
    for label, network in (("1-D bar", bar(5000)), ("2-D grid", grid(70))):
        stiffness = rng.uniform(0.5, 2.0, len(network.elements))
        f = rng.uniform(-1.0, 1.0, network.nodes)
        args = network.arguments(stiffness, 0.05, f)
        value, grad = gradient(*args)
        u = args[-1]
        closed = network.closed_form_gradient(u)
        error = np.max(np.abs(grad - closed)) / np.max(np.abs(closed))
        matrix = sp.csr_matrix((args[-2], network.indices, network.indptr)).tocsc()
        solve = best_of(5, lambda: sp.linalg.splu(matrix).solve(f))
        # new stiffness for every call, as in training: adsrc reuses the factorisation of an
        # unchanged matrix, which would flatter the timing
        steps = itertools.count(1)
        with_gradient = best_of(5, lambda: gradient(*network.arguments(
            stiffness * (1.0 + 1e-9 * next(steps)), 0.05, f)))
        print(f"{label:>14} {network.nodes:>9} {len(network.elements):>9} {error:>15.2e} "
              f"{solve * 1e3:>9.2f} {with_gradient * 1e3:>12.2f} "
              f"{with_gradient / solve:>6.2f}")
        assert error < 1e-8, "the gradient does not match the closed form"
    print("gradient = value and gradient by adsrc (assembly, LU, solve, transposed solve); "
          "solve = LU and solve alone")


if __name__ == "__main__":
    main()
