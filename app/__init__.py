"""Shieldwright: signed, encrypted template disks for Shielded / Confidential VMs."""

__version__ = "0.1.0"
APP_ID = "io.github.shieldwright.Shieldwright"
