"""CLI subcommands, one module per area. Each module has ``register(subparsers)``.

Command modules import the engine lazily inside their handlers, so building the parser stays cheap
and never loads Qt. A handler returns the exit code; ShieldwrightError is turned into a one-line
message by :func:`app.cli.main`.
"""

#: Modules under app.commands whose ``register`` adds subcommands, in help order.
COMMAND_MODULES = ("disk", "cert", "pe", "uki", "luks", "vsc", "build", "verify")
