"""Cython's glue code compiled with less optimisation than the kernels.

Why: most of the C compiler's time on a generated module went to code that runs once per call,
not once per element: the ``def`` wrappers' argument parsing and memoryview checks, the module's
initialisation, Cython's runtime support code (most of the 10,000 lines of C of a Jacobi
adjoint's module).  With that code at ``-O1`` instead of adsrc's ``-O3``, a kernel's build
(``differentiate`` and the first calls, in a process that has built before) is 1.2-1.6x shorter
for 9 of the 10 shipped kernels (gcc alone on the Jacobi module, by hand: 1.3 s of CPU instead
of 2.2 s).  The kernels run about as fast as before: their adjoints take 0.89-1.05x the time and
their primals 0.68-1.13x, on grids from 4x4 to 256x256, as much as code layout alone moves them
(``benchmarks/FLAGS_DADSRCOPTIMIZEGLUE.md``: every kernel built both ways, timed in turn).

:func:`lighter_glue` brackets that code in Cython's C with GCC's ``#pragma GCC optimize``: each
``def`` wrapper's argument parsing (from ``/* Python wrapper */`` to the function that holds the
wrapper's body), and everything from the module's extension types on (module initialisation and
the support code).  The rest keeps the command line's flags, adsrc's and the user's: the
``cdef`` functions, the inline functions they call, and the wrappers' bodies that call them.
(A first version that put the whole wrappers in the glue made most adjoints 6-18% slower: the
kernels were then compiled apart from the calls of their wrappers' bodies.)  Only
GCC with optimisation on reads the pragmas (clang, or ``-O0``, compile the module as before),
and ``-DADSRC_OPTIMIZE_GLUE`` in ``$ADSRC_CFLAGS`` turns them off.  C text without the expected
markers (another Cython's layout) is left as it is: a slower build, never different kernels.
"""

GLUE_LEVEL = "O1"
OPT_OUT_MACRO = "ADSRC_OPTIMIZE_GLUE"
# part of every generated module's cache key (adsrc.compiling.cython_build.keyed_flags)
RECIPE = f"wrappers' argument parsing, module initialisation and support code at {GLUE_LEVEL}"

_WRAPPER = "/* Python wrapper */"
_WRAPPER_BODY = "static PyObject *__pyx_pf_"
_AFTER_FUNCTIONS = "/* #### Code section: module_exttypes ### */"
_SWITCH = "ADSRC_LIGHTER_GLUE"
_DECISION = [f"#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__) "
             f"&& !defined({OPT_OUT_MACRO})", f"#define {_SWITCH}", "#endif"]
_GLUE = [f"#ifdef {_SWITCH}", "#pragma GCC push_options",
         f'#pragma GCC optimize ("{GLUE_LEVEL}")', "#endif"]
_END_OF_GLUE = [f"#ifdef {_SWITCH}", "#pragma GCC pop_options", "#endif"]


def lighter_glue(c_text):
    """``c_text`` (the C Cython wrote for a generated module) with its glue compiled at
    ``GLUE_LEVEL``; unchanged when its layout is not the one expected."""
    lines = c_text.split("\n")
    if _AFTER_FUNCTIONS not in lines:
        return c_text
    end = lines.index(_AFTER_FUNCTIONS)
    out, in_glue = [], False
    for line in lines[:end]:
        if line == _WRAPPER and not in_glue:
            out += _GLUE
            in_glue = True
        elif in_glue and line.startswith(_WRAPPER_BODY) and line.endswith("{"):
            out += _END_OF_GLUE
            in_glue = False
        out.append(line)
    if in_glue:
        return c_text               # a wrapper without the body expected after it
    first = next((i for i, line in enumerate(out) if line == _GLUE[0]), len(out))
    return "\n".join(out[:first] + _DECISION + out[first:] + _GLUE + lines[end:])
