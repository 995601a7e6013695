"""Disk images (raw, VHD, VHDX, qcow2), GPT, the partition model, and image writers. Qt-free."""
