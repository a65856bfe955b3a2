"""Declares the C pre-processing extension; all metadata lives in pyproject.toml.

``optional=True``: on a machine without a C compiler the install still succeeds and edgemm falls
back to the numpy pre-processing with a warning (edgemm.frontends.native).
"""
import sys

from setuptools import Extension, setup

args = ["/O2"] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-Wall"]

setup(
    ext_modules=[
        Extension(
            "edgemm.frontends.native._preproc",
            sources=["edgemm/frontends/native/_preproc.c"],
            extra_compile_args=args,
            optional=True,
        )
    ]
)
