"""The one compiled part: app.luks._xts, AES-XTS-plain64 over many sectors per call (see app/luks/_xts.c).

Everything else is in pyproject.toml. The extension links the system libcrypto (libssl-dev) and is
optional: where it cannot be built, app.luks.xts encrypts with its NumPy path instead (slower, same bytes).
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
        )
    ]
)
