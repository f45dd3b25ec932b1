"""Vector-mode modules: the scalar tangent (or tangent-of-adjoint) module of a kernel, rewritten
by :mod:`adsrc.transformations.vector` to carry k directions per sweep.

``Generator.source`` sends the modes ``vector_tangent`` and ``vector_hvp`` here; everything
before the rewrite (specialisation, analyses, the scalar transformations) is shared with the
scalar modes.
"""

from adsrc.backends import python as python_backend
from adsrc.backends.cython import CythonModule
from adsrc.transformations.reverse import build_functions
from adsrc.transformations.second_order import build_second_order
from adsrc.transformations.tangent import build_tangent
from adsrc.transformations.vector import COUNT, DIRECTION, primal_half, vectorize

VECTOR_TANGENT, VECTOR_HVP = "vector_tangent", "vector_hvp"

LAYOUT = (
    f"Vector mode: {COUNT} directions per sweep.  The tangent of a scalar is an array of {COUNT}\n"
    f"values; the tangent of an array a is a flat array of a.size * {COUNT} values, direction\n"
    f"innermost: a[i] in direction {DIRECTION} is a_dot[i * {COUNT} + {DIRECTION}]. "
    f"Consecutive tangent\nstatements share one loop over the directions, after their partial "
    f"derivatives (_p0, _p1, ...)\nand the primal statements they do not depend on.\n")


class _VectorCythonModule(CythonModule):
    """The Cython printer, for functions whose returned tangents are out-parameters: only the
    primal half of what the scalar function returned goes through ``_scalar_out``."""

    def _function(self, spec, function, renames, written, bounds, tape, scalar_returns=None,
                  read_only=frozenset()):
        return super()._function(spec, function, renames, written, bounds, tape,
                                 primal_half(scalar_returns), read_only)

    def _wrappers_for(self, spec, functions, written, read_only=frozenset()):
        return super()._wrappers_for(
            spec, [(function, tape, primal_half(scalar)) for function, tape, scalar in functions],
            written, read_only)


def module_source(generator, entry, backend, header, mode, tape_module=None):
    """Source text of the vector module (all specialisations of ``generator``); a Cython
    module cimports its tape from ``tape_module``, or carries it when None."""
    if mode == VECTOR_TANGENT:
        built = generator._build_all(lambda spec: (build_tangent(spec),))
        functions = vectorize([(spec, tangent) for spec, tangent in built])
        header += f"{entry.tan_name}(args..., dots..., [_out0_dot: the return value's " \
            f"tangent], {COUNT})\n"
    else:
        built = generator._build_all(build_functions)
        functions = vectorize([(spec, function) for spec, forward, reverse in built
                               for function in build_second_order(spec, forward, reverse)])
        header += "The dot functions take, after their scalar-mode arguments, out-parameters " \
            f"for the tangents\nthe scalar functions return (_out0_dot, ...), then {COUNT}.\n"
    header += LAYOUT
    if backend == "python":
        return python_backend.module_source(header, [function for _, function in functions])
    module = _VectorCythonModule()
    if mode == VECTOR_TANGENT:
        for spec, tangent in functions:
            module.add_tangent(spec, tangent, entry=spec is entry)
    else:
        for (spec, forward), (_, reverse) in zip(functions[::2], functions[1::2]):
            module.add_second_order(spec, forward, reverse, entry=spec is entry)
    return module.source(header, tape_module)
