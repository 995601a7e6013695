"""The compiled parts, both optional and both linking the system libcrypto (libssl-dev):

- app.luks._xts: AES-XTS-plain64 over many sectors per call (app/luks/_xts.c); without it app.luks.xts
  encrypts with its NumPy path (slower, same bytes).
- app.catalog._maphash: SHA-256 of file blocks hashed in the page cache, SIGBUS-safe
  (app/catalog/_maphash.c); without it app.catalog.hasher reads into buffers (slower, same digests).

Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "app.luks._xts",
            sources=["app/luks/_xts.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
            optional=True,
        ),
        Extension(
            "app.catalog._maphash",
            sources=["app/catalog/_maphash.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
            optional=True,
        ),
    ]
)
