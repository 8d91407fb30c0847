"""The command line: ``app`` (typer commands and rendering) and ``targets`` (per-target flags that build
each target's config). ``main`` is the console entry point."""

from forgeml.cli.app import app, main  # noqa: F401
