"""openbatch: a self-hosted Azure Batch and Azure Blob Storage, wire-compatible with the official SDKs."""

from __future__ import annotations

__version__ = "0.1.0"
