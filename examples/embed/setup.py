"""Build the embedding example against the installed pyconv:

    python setup.py build_ext --inplace

pyconv.get_include() is the package directory: its parent is where Cython resolves
``cimport pyconv.capi`` (needed for editable installs; a regular install is also found
on sys.path), and the directory itself is the C include path for pyconv's headers.
No OpenMP flags are needed here: the kernels run in pyconv's own modules.
"""

import os

import pyconv
from Cython.Build import cythonize
from setuptools import Extension, setup

ext = Extension("embed_example", ["embed_example.pyx"], include_dirs=[pyconv.get_include()])

setup(
    name="pyconv-embed-example",
    ext_modules=cythonize([ext], include_path=[os.path.dirname(pyconv.get_include())],
                          compiler_directives={"language_level": 3, "boundscheck": False,
                                               "wraparound": False}),
)
