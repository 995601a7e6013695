"""CLI subcommands, one module per area, each with ``register(subparsers)``; a handler returns the exit code.

The CLI imports every command module to build its parser, so handlers import the engine lazily: the
parser, ``--help`` and each command stay light and never load Qt.
"""

#: Modules under app.commands whose ``register`` adds subcommands, in help order.
COMMAND_MODULES = (
    "disk",
    "cert",
    "pe",
    "uki",
    "luks",
    "vsc",
    "build",
    "verify",
    "pcr",
    "firmware",
    "testboot",
    "vtpm",
    "provision",
    "shield",
)
