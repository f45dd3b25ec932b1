"""The compiled adjoints shipped with adsrc: which kernels, which derivatives, which types.

``setup.py`` calls :func:`write_all` before it cythonizes ``kernels/generated/*.pyx``; the
generated files are committed too, and ``tests/test_kernels_build.py`` fails when they are stale
(when :func:`generate_all` no longer reproduces them).  Index arrays are int32, SciPy's default;
for other types, differentiate the kernel from ``adsrc.kernels`` at run time.
"""

import os

CSR = ["int32[:]", "int32[:]", "float64[:]"]

#: kernel name -> (wrt, outputs, argument types)
SHIPPED = {
    "jacobi_damped": (("data", "dinv", "x", "b", "alpha"), ("x",),
                      CSR + ["float64[:]", "float64[:]", "float64[:]", "float", "int"]),
    "jacobi_csr": (("data", "x", "b", "omega"), ("x",),
                   CSR + ["float64[:]", "float64[:]", "float", "int"]),
    "gauss_seidel": (("data", "x", "b"), ("x",), CSR + ["float64[:]", "float64[:]", "int"]),
    "gauss_seidel_backward": (("data", "x", "b"), ("x",),
                              CSR + ["float64[:]", "float64[:]", "int"]),
    "gauss_seidel_symmetric": (("data", "x", "b"), ("x",),
                               CSR + ["float64[:]", "float64[:]", "int"]),
    "sor": (("data", "x", "b", "omega"), ("x",),
            CSR + ["float64[:]", "float64[:]", "float", "int"]),
    "spmv": (("data", "x"), ("y",), CSR + ["float64[:]", "float64[:]"]),
    "spmv_transpose": (("data", "x"), ("y",), CSR + ["float64[:]", "float64[:]"]),
    "lower_solve": (("data", "x"), ("x",), CSR + ["float64[:]"]),
    "upper_solve": (("data", "x"), ("x",), CSR + ["float64[:]"]),
}

GENERATED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated")
COMMAND = "python setup.py (kernels/build.py)"


def generate_all():
    """File name -> source text of every shipped adjoint module."""
    from adsrc.kernels import solvers
    from adsrc.offline import generate

    files = {}
    for name, (wrt, outputs, types) in SHIPPED.items():
        filename, source = generate(getattr(solvers, name), wrt, outputs, types, "cython",
                                    COMMAND, source_label="kernels/solvers.py")
        files[filename] = source
    return files


def write_all():
    """Regenerate ``kernels/generated/``; returns the module names (without package)."""
    os.makedirs(GENERATED, exist_ok=True)
    modules = []
    for filename, source in generate_all().items():
        path = os.path.join(GENERATED, filename)
        current = open(path).read() if os.path.exists(path) else None
        if current != source:
            with open(path, "w") as handle:
                handle.write(source)
        modules.append(os.path.splitext(filename)[0])
    return modules
