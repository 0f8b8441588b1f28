"""CLI commands of this area (registered by filtag_kg.cli). Heavy imports stay inside commands."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this area's commands to the main group."""
