"""Build script: package layout (metadata lives in pyproject.toml).

The solver kernels live in the top-level ``kernels/`` folder and install as ``adsrc.kernels``.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["adsrc", "adsrc.*"]) + ["adsrc.kernels"],
    package_dir={"adsrc.kernels": "kernels"},
)
