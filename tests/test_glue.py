"""Cython's glue compiled with less optimisation than the kernels (adsrc/compiling/glue.py).

The C text is the installed Cython's: these tests fail when a Cython release lays its C out in
a way the pragmas no longer bracket as intended (the kernels' code in the glue, or a wrapper's
argument parsing outside it), rather than letting builds quietly slow down or kernels lose
their optimisation.
"""

import numpy as np
import pytest

import adsrc
from adsrc.compiling import glue

# gcc at adsrc's -O3, where the pragmas act; a cache of each test's own, where the module is
# built (another test, or another worker, built it in the session's)
pytestmark = [pytest.mark.shipping_flags, pytest.mark.private_cache]


def glue_scale(x, c):
    """A callee: specialised apart, so its cdef functions follow the entry's wrappers."""
    for i in range(len(x)):
        x[i] = c * x[i]


def glue_entry(x, y, c):
    glue_scale(x, c)
    s = 0.0
    for i in range(len(x)):
        y[i] = x[i] * x[i]
        s += y[i]
    return s


def _optimisation_of_each_function(c_text):
    """{C function defined in the text: "glue" if it is compiled at the glue's level, else
    "full"}, following the pragmas as GCC does."""
    levels, stack, pending = {}, ["full"], None
    for line in c_text.split("\n"):
        if line == "#pragma GCC push_options":
            stack.append(stack[-1])
        elif line == "#pragma GCC pop_options":
            stack.pop()
        elif line == f'#pragma GCC optimize ("{glue.GLUE_LEVEL}")':
            stack[-1] = "glue"
        elif line.startswith("static ") and "(" in line:
            pending = line.split("(")[0].split()[-1].lstrip("*")
        if pending and line.endswith("{"):          # a definition, maybe over several lines
            levels[pending], pending = stack[-1], None
        elif pending and ";" in line:               # a declaration
            pending = None
    assert stack == ["full", "glue"], "the glue's stretch from the module's types on is open"
    return levels


@pytest.fixture
def c_texts(monkeypatch):
    """The C of the modules built while the fixture is active: [(Cython's, with the pragmas)]."""
    seen = []
    original = glue.lighter_glue

    def recording(c_text):
        seen.append((c_text, original(c_text)))
        return seen[-1][1]

    monkeypatch.setattr(glue, "lighter_glue", recording)
    return seen


def test_a_generated_modules_kernels_keep_the_full_optimisation_and_its_glue_gets_less(
        c_texts):
    x = np.linspace(0.5, 1.5, 7)
    f = adsrc.value_and_grad(glue_entry, wrt=("x", "c"), backend="cython")
    value, (x_bar, c_bar) = f(x.copy(), np.zeros(7), 1.3)
    reference, (x_ref, c_ref) = adsrc.value_and_grad(glue_entry, wrt=("x", "c"),
                                                     backend="python")(x.copy(), np.zeros(7), 1.3)
    # built at -O3 with the pragmas: the same numbers as the Python backend, and as by hand
    assert value == pytest.approx(reference, rel=1e-14) and value == pytest.approx(
        np.sum((1.3 * x) ** 2), rel=1e-14)
    np.testing.assert_allclose(x_bar, x_ref, rtol=1e-14)
    np.testing.assert_allclose(x_bar, 2 * 1.3 ** 2 * x, rtol=1e-14)
    assert c_bar == pytest.approx(c_ref, rel=1e-14) and c_bar == pytest.approx(
        2 * 1.3 * np.sum(x ** 2), rel=1e-14)

    assert len(c_texts) == 1, "one module built, its C rewritten once"
    cython_text, text = c_texts[0]
    assert text != cython_text
    levels = _optimisation_of_each_function(text)
    kernels = [name for name in levels if name.endswith(("__primal_c", "__fwd_c", "__rev_c"))]
    assert sorted(name.rsplit("glue_", 1)[1] for name in kernels) == [
        "entry__fwd_c", "entry__primal_c", "entry__rev_c",
        "scale__fwd_c", "scale__primal_c", "scale__rev_c"]
    callee = next(line for line in cython_text.split("\n") if "glue_scale__rev_c(" in line
                  and line.endswith("{"))
    assert cython_text.index(callee) > cython_text.index("/* Python wrapper */"), \
        "the callee's functions follow the entry's wrappers, so that they are checked here"
    # the kernels, the tape's inline functions and the wrappers' bodies that call the kernels
    assert {levels[name] for name in kernels} == {"full"}
    assert {level for name, level in levels.items() if "push_float" in name} == {"full"}
    bodies = [name for name in levels if name.startswith("__pyx_pf_")]
    assert len(bodies) == 3 and {levels[name] for name in bodies} == {"full"}
    # the wrappers' argument parsing, the module's initialisation and the support code
    parsers = [name for name in levels if name.startswith("__pyx_pw_")]
    assert len(parsers) == 3 and {levels[name] for name in parsers} == {"glue"}
    assert levels["__pyx_pymod_exec_" + text.split("__pyx_pymod_exec_")[1].split("(")[0]] \
        == "glue"
    assert levels["__Pyx_AddTraceback"] == "glue"
    # only GCC with optimisation on reads the pragmas, and a macro turns them off
    decision = text.index("#define ADSRC_LIGHTER_GLUE")
    condition = text[:decision].rsplit("#if ", 1)[1]
    assert condition.split() == ["defined(__GNUC__)", "&&", "!defined(__clang__)", "&&",
                                 "defined(__OPTIMIZE__)", "&&",
                                 f"!defined({glue.OPT_OUT_MACRO})"]
    assert decision < text.index("#pragma GCC push_options")
    lines = text.split("\n")
    pragmas = [i for i, line in enumerate(lines) if line.startswith("#pragma GCC ")
               and ("_options" in line or "optimize" in line)]
    assert pragmas and all("#ifdef ADSRC_LIGHTER_GLUE" in lines[i - 2:i] for i in pragmas)


def test_c_of_another_layout_is_left_as_it_is(c_texts):
    adsrc.grad(glue_entry, wrt=("c",), backend="cython")(np.ones(4), np.zeros(4), 2.0)
    cython_text = c_texts[0][0]
    no_wrapper_body = cython_text.replace("static PyObject *__pyx_pf_", "static PyObject *_q_")
    no_module_types = cython_text.replace("/* #### Code section: module_exttypes ### */", "")
    for other in (no_wrapper_body, no_module_types):
        assert other != cython_text and glue.lighter_glue(other) == other
