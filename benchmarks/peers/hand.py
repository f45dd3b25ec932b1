"""Hand-written adjoints in adsrc's calling convention, whatever compiled them (peers/numba_peer.py,
peers/cython_hand_peer.py): the benchmark's Cases, and the check against finite differences.

The mutated arrays end in their final state; ``x_bar``/``y_bar`` enter holding the adjoint of
the final value and leave holding the adjoint of the initial value; ``data_bar``/``b_bar`` are
incremented; the scalar's adjoint is returned.
"""

import numpy as np


def _adjoint_call(adjoints, spec, problem):
    """(setup, run, result) of the hand adjoint, in adsrc's calling convention."""
    from problems import arguments, placed

    adjoint = adjoints[spec.name]
    out_is_y = spec.output == "y"

    def setup():
        args = arguments(spec, problem)
        seed = placed(problem.w)
        data_bar = placed(np.zeros(problem.nnz))
        other_bar = placed(np.zeros(problem.n))     # b_bar, or x_bar for the products
        return args, seed, data_bar, other_bar

    def run(state):
        args, seed, data_bar, other_bar = state
        if out_is_y:                                        # (..., y_bar, data_bar, x_bar)
            return adjoint(*args, seed, data_bar, other_bar)
        if spec.name in ("lower_solve", "upper_solve"):     # (..., x_bar, data_bar)
            return adjoint(*args, seed, data_bar)
        return adjoint(*args, seed, data_bar, other_bar)    # (..., x_bar, data_bar, b_bar)

    def result(state, scalar_bar):
        args, seed, data_bar, other_bar = state
        grads = {"data": data_bar}
        if out_is_y:
            grads["x"] = other_bar
        else:
            grads["x"] = seed
            if "b" in spec.wrt:
                grads["b"] = other_bar
        if spec.scalar_param:
            grads[spec.scalar_param] = float(scalar_bar)
        return grads

    return setup, run, result


def cases(primals, adjoints, spec, problem):
    """The peer's ``build``: Cases of the primal and the hand adjoint, or None when the peer
    has no hand adjoint of this kernel."""
    from peers import Case
    from problems import arguments, primal_result

    if spec.name not in adjoints:
        return None
    primal = primals[spec.name]
    setup, run, result = _adjoint_call(adjoints, spec, problem)
    return {
        "primal": Case(setup=lambda: arguments(spec, problem), run=lambda args: primal(*args),
                       result=primal_result(spec)),
        "grad": Case(setup=setup, run=run, result=result),
    }


def verify(primals, adjoints, spec, problem, who, directions=3, rtol=1e-6, seed=1):
    """Check a hand adjoint against central finite differences of its primal.

    For random directions v over every compared input (data, b, the scalar, the initial x),
    compares <w, (F(p + h v) - F(p - h v)) / 2h> with <grad, v>.  Returns the worst relative
    error; raises AssertionError above rtol."""
    from problems import arguments

    primal = primals[spec.name]
    setup, run, result = _adjoint_call(adjoints, spec, problem)
    state = setup()
    grads = result(state, run(state))
    rng = np.random.default_rng(seed)
    out_index = spec.params.index(spec.output)

    def loss(perturb):
        args = arguments(spec, problem)
        for key, dv in perturb.items():
            pos = spec.params.index(key)
            args[pos] = args[pos] + dv if isinstance(dv, float) else np.asarray(args[pos]) + dv
        primal(*args)
        return float(np.dot(problem.w, args[out_index]))

    worst = 0.0
    for _ in range(directions):
        v = {}
        for key in spec.compared:
            if key == spec.scalar_param:
                v[key] = float(rng.standard_normal())
            else:
                v[key] = rng.standard_normal(np.shape(grads[key]))
        exact = sum(float(np.sum(np.asarray(grads[key]) * v[key])) for key in v)
        fd = 0.0
        for h, weight in ((1e-4, 4.0 / 3.0), (2e-4, -1.0 / 3.0)):   # Richardson
            plus = loss({k: h * dv for k, dv in v.items()})
            minus = loss({k: -h * dv for k, dv in v.items()})
            fd += weight * (plus - minus) / (2 * h)
        err = abs(fd - exact) / max(abs(exact), 1e-12)
        worst = max(worst, err)
    if worst > rtol:
        raise AssertionError(f"{who} hand adjoint of {spec.name}: finite differences disagree, "
                             f"relative error {worst:.2e} > {rtol:.0e}")
    return worst
