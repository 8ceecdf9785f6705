"""The one error type the emulator's model raises, and how it maps onto both transports.

The REST API answers with the HTTP status and ``{"message": ...}``; the RPC endpoint answers
HTTP 200 with the legacy envelope ``{"status": <code>, "response": [<CODE>], "payload": <message>}``,
which is how the real service reports errors there and what the SDK's ``check_error_response``
turns into exceptions.
"""

from __future__ import annotations

# HTTP status -> the RPC error code the SDK maps to the same exception class.
RPC_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENTS_ERROR",
    401: "AUTHENTICATION_ERROR",
    403: "AUTHORISATION_ERROR",
    404: "RESOURCE_NOT_FOUND_ERROR",
    405: "METHOD_NOT_ALLOWED_ERROR",
    409: "RESOURCE_EXISTS_ERROR",
    429: "RATE_LIMIT_ERROR",
}


class ApiError(Exception):
    """A request the real service would refuse: carries the HTTP status and a message."""

    def __init__(self, status: int, message: str, *, rpc_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rpc_code = rpc_code or RPC_CODES.get(status, "UNKNOWN_ERROR")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)
