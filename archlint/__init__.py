"""archlint: static analysis of sequence models — reach and budget at any length."""

__version__ = "0.1.0"
