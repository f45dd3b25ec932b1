"""Build hook for adsrc.

All metadata lives in pyproject.toml. This file exists so that the Cython
extension modules (kernels/, issue 3) can be declared here with
``ext_modules=cythonize(...)``; until then it adds nothing.
"""

from setuptools import setup

setup()
