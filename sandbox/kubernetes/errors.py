"""Errors answered as Kubernetes ``Status`` objects, with the apiserver's reasons and messages."""

from __future__ import annotations

from typing import Any

from sandbox.kubernetes.resources import ResourceInfo

JSON = dict[str, Any]


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{info.qualified} "{name}" not found',
        {"name": name, "group": info.group, "kind": info.plural},
    )


def invalid(info: ResourceInfo, name: str, causes: list[tuple[str, str]]) -> ApiError:
    texts = [f"{path}: {msg}" for path, msg in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{info.kind_qualified} "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": info.group,
            "kind": info.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": p} for p, m in causes],
        },
    )


def conflict(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {info.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": info.group, "kind": info.plural},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
