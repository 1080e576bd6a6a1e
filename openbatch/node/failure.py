"""What the node code reports when a task cannot run as asked: Azure's task failureInfo."""

from __future__ import annotations

from typing import Any


class TaskFailure(Exception):
    """A failure with the fields of a task's ``failureInfo`` (category, code, message, details)."""

    def __init__(self, code: str, message: str, details: list[dict[str, str]] | None = None,
                 category: str = "usererror"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.category = category
        self.details = details or []

    def failure_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"category": self.category, "code": self.code, "message": self.message}
        if self.details:
            info["details"] = self.details
        return info
