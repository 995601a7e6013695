"""Key pairs made by openssl (not by our code), for guardians and owners in tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def openssl_pair(d: Path, name: str, newkey: str) -> tuple[Path, Path]:
    """``d/name.key`` (unencrypted) and a self-signed ``d/name.crt`` (CN=name); ``newkey`` is openssl's
    ``-newkey`` (``rsa:3072``, or ``ec`` for P-256)."""
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    curve = ["-pkeyopt", "ec_paramgen_curve:P-256"] if newkey == "ec" else []
    openssl("req", "-x509", "-newkey", newkey, "-nodes", "-keyout", key, "-out", crt, "-subj", f"/CN={name}",
            "-days", "30", *curve)  # fmt: skip
    return key, crt
