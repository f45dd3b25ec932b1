"""Build script: package layout and the compiled adjoints of the shipped kernels.

The solver kernels live in the top-level ``kernels/`` folder and install as ``adsrc.kernels``.
Before building, adsrc itself generates the adjoint of each shipped kernel into
``kernels/generated/`` (see kernels/build.py); the generated ``.pyx`` files are then cythonized
against one shared Cython utility module.  Metadata lives in pyproject.toml.
"""

import os
import sys

from setuptools import Extension, find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)


def _load_build_module():
    """kernels/build.py, with ``adsrc.kernels`` pointing at the kernels/ folder."""
    import importlib.util

    import adsrc

    spec = importlib.util.spec_from_file_location(
        "adsrc.kernels", os.path.join(ROOT, "kernels", "__init__.py"),
        submodule_search_locations=[os.path.join(ROOT, "kernels")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["adsrc.kernels"] = package
    adsrc.kernels = package
    spec.loader.exec_module(package)
    from adsrc.kernels import build
    return build


def extensions():
    from Cython.Build import cythonize

    from adsrc.compiling.cython_build import FLAGS    # adsrc's own flags, and why, are there

    build = _load_build_module()
    modules = build.write_all()
    package = "adsrc.kernels.generated"
    shared = f"{package}._cyutility"
    sources = [Extension(shared, [os.path.join("kernels", "generated", "_cyutility.c")])]
    sources += [Extension(f"{package}.{module}",
                          [os.path.join("kernels", "generated", module + ".pyx")],
                          extra_compile_args=FLAGS) for module in modules]
    return cythonize(sources, shared_utility_qualified_name=shared, quiet=True)


setup(
    packages=find_packages(include=["adsrc", "adsrc.*"]) + ["adsrc.kernels",
                                                            "adsrc.kernels.generated"],
    package_dir={"adsrc.kernels": "kernels", "adsrc.kernels.generated": "kernels/generated"},
    ext_modules=extensions(),
)
