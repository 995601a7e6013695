"""Fixtures for catalog tests: openssl-made signing keys and small disks with awkward geometry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.catalog.helpers import make_odd_disk
from tests.signing.pe_helpers import TestKey, openssl_key


@pytest.fixture(scope="session")
def catalog_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestKey]:
    """``signer`` (RSA, self-signed), ``ec`` (P-256), ``other`` (an unrelated signer), ``ca`` + ``leaf``."""
    d = tmp_path_factory.mktemp("catkeys")
    ca = openssl_key(d, "cat-ca")
    return {
        "signer": openssl_key(d, "cat-signer"),
        "ec": openssl_key(d, "cat-ec", "p256"),
        "other": openssl_key(d, "cat-other"),
        "ca": ca,
        "leaf": openssl_key(d, "cat-leaf", ca=(ca,)),
    }


@pytest.fixture(scope="session")
def odd_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """See :func:`tests.catalog.helpers.make_odd_disk`. Read-only!"""
    path = make_odd_disk(tmp_path_factory.mktemp("odd") / "odd.raw")
    os.chmod(path, 0o444)
    return path
