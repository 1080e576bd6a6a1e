"""The live-server helper lives in the package (openbatch.testing) so benchmarks and users can use it too."""

from __future__ import annotations

from openbatch.testing import LiveServer, free_port

__all__ = ["LiveServer", "free_port"]
