"""The one list of error codes, shared by the UI, the services and the REST API."""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    WEAK_PASSWORD = "WEAK_PASSWORD"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    ALREADY_MEMBER = "ALREADY_MEMBER"
    LAST_ADMIN = "LAST_ADMIN"
    NO_ORGANIZATION = "NO_ORGANIZATION"
    FORBIDDEN = "FORBIDDEN"
    BILLING_NOT_CONFIGURED = "BILLING_NOT_CONFIGURED"


# HTTP status for each code, for the REST API; the UI shows the message only.
HTTP_STATUS = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.SESSION_EXPIRED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.EMAIL_TAKEN: 409,
    ErrorCode.WEAK_PASSWORD: 422,
    ErrorCode.USER_NOT_FOUND: 404,
    ErrorCode.ALREADY_MEMBER: 409,
    ErrorCode.LAST_ADMIN: 409,
    ErrorCode.NO_ORGANIZATION: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.BILLING_NOT_CONFIGURED: 503,
}


class AppError(Exception):
    """A refusal the user should read: a code for programs, a message for people."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)
