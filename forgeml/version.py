"""The package version: one place, read by the package and the manifest."""

__version__ = "0.1.0"
