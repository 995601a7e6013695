"""The trust anchor of the verifying commands: ``verify``, ``vsc verify`` and ``pe verify``.

A valid signature proves only that *someone* signed, so without a trusted certificate these commands
say the signer was NOT checked and exit :data:`EXIT_SIGNER_NOT_CHECKED`, unless the user opts out with
:data:`NO_TRUST_CHECK`.
"""

from __future__ import annotations

import argparse

from app.errors import ShieldwrightError

#: Every check passed, but no signer was checked against a trusted certificate.
EXIT_SIGNER_NOT_CHECKED = 3

NO_TRUST_CHECK = "--no-trust-check"

#: How the chain is judged, for each command's ``--help``.
CHAIN_RULES = (
    "The signer must be one of these certificates or chain to one by RFC 5280 code-signing rules: every "
    "issuer a CA (basicConstraints cA TRUE, keyUsage keyCertSign), path lengths honoured, extendedKeyUsage "
    "codeSigning (or none). Expiry is NOT checked, as UEFI firmware does not check it (cert show reports "
    "it): a chain of expired certificates is accepted if they were all valid at one common moment."
)

EXIT_CODE_HELP = (
    f"{EXIT_SIGNER_NOT_CHECKED} every check passed but no trusted certificate was given, so the signer was "
    f"NOT checked ({NO_TRUST_CHECK} makes that 0)"
)


class SignerNotCheckedError(ShieldwrightError):
    """No trust anchor was given and the user did not opt out: the signatures say nothing about who signed."""

    exit_code = EXIT_SIGNER_NOT_CHECKED


def add_trust_options(
    parser: argparse.ArgumentParser, *names: str, what: str, repeatable: bool = False
) -> None:
    """``names`` (e.g. ``--trust``) for the trusted certificate(s) and :data:`NO_TRUST_CHECK`, exclusive."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        *names,
        metavar="CERT",
        dest="trust",
        action="append" if repeatable else "store",
        help=f"certificate(s) (PEM bundle or DER) trusted to sign {what}"
        + ("; repeatable" if repeatable else "")
        + ". "
        + CHAIN_RULES,
    )
    group.add_argument(
        NO_TRUST_CHECK,
        action="store_true",
        help=f"accept any signer: check the signatures and contents only (without it, no {names[0]} "
        f"means exit status {EXIT_SIGNER_NOT_CHECKED})",
    )


def signer_not_checked(flag: str) -> SignerNotCheckedError:
    """The one-line error for a verification that passed without a trust anchor."""
    return SignerNotCheckedError(
        f"the signer was NOT checked: no {flag} given, so anyone could have made these signatures",
        f"give {flag} with the certificate you trust, or {NO_TRUST_CHECK} to accept any signer",
    )
