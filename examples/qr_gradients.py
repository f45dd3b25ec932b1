"""Gradients through a QR factorisation, inside a kernel, against finite differences.

``Q, R = np.linalg.qr(A)`` in a kernel goes through adsrc's QR rule (reduced QR of a square or
tall matrix); the loops around it are differentiated by source transformation.  The loss mixes
both factors: a weighted sum of Q's entries cubed and the sum of sin of R's upper triangle.

    python examples/qr_gradients.py
"""

import math

import numpy as np

import adsrc


def qr_loss(A, weights):
    Q, R = np.linalg.qr(A)
    total = 0.0
    m, k = Q.shape
    for i in range(m):
        for j in range(k):
            total += weights[i, j] * Q[i, j] ** 3
    for i in range(k):
        for j in range(i, k):
            total += math.sin(R[i, j])
    return total


def central_difference(A, weights, direction, h=1e-6):
    return (qr_loss(A + h * direction, weights) - qr_loss(A - h * direction, weights)) / (2 * h)


def main():
    rng = np.random.default_rng(0)
    gradient = adsrc.grad(qr_loss, wrt="A")
    for rows, columns in ((6, 6), (40, 12)):
        A = rng.standard_normal((rows, columns))
        weights = rng.standard_normal((rows, columns))
        grad = gradient(A, weights)
        worst = 0.0
        for _ in range(5):
            direction = rng.standard_normal((rows, columns))
            exact = float(np.sum(grad * direction))
            worst = max(worst, abs(exact - central_difference(A, weights, direction))
                        / abs(exact))
        print(f"A {rows} x {columns}: <grad, v> against central differences in 5 random "
              f"directions, worst relative difference {worst:.1e}")
        assert worst < 1e-6


if __name__ == "__main__":
    main()
