"""Thin Qt item-model adapters over the engine's plain dataclasses."""
