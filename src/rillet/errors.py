"""Rillet's exceptions and the closed set of wire error codes.

```
RilletError
├── ConfigurationError        bad settings; raised at start, never on the wire
├── StorageError              the database failed (translated from SQLAlchemy)
├── StreamError               the stream backend failed or refused (translated from Redis)
│   └── LeaseLostError        another node took the run over; its old owner must stop
└── ProtocolError             a refusal sent to a client, carrying a wire `code`
    ├── UnauthorizedError     unauthorized
    ├── ForbiddenError        forbidden
    ├── NotFoundError         not_found (also for other users' objects)
    ├── InvalidFrameError     invalid_frame
    ├── TooLargeError         too_large
    ├── RateLimitedError      rate_limited
    ├── BusyError             busy
    ├── ResumeExpiredError    resume_expired
    ├── ProviderError         provider_error
    ├── ToolError             tool_error
    ├── TimeoutError_         timeout
    └── InternalError         internal
```
Third-party errors are translated where they enter Rillet, with `raise ... from exc`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorCode = Literal[
    "unauthorized",
    "forbidden",
    "not_found",
    "invalid_frame",
    "too_large",
    "rate_limited",
    "budget_exceeded",
    "busy",
    "resume_expired",
    "provider_error",
    "tool_error",
    "timeout",
    "internal",
]

HTTP_STATUS: dict[ErrorCode, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "invalid_frame": 400,
    "too_large": 413,
    "rate_limited": 429,
    "budget_exceeded": 402,
    "busy": 409,
    "resume_expired": 410,
    "provider_error": 502,
    "tool_error": 500,
    "timeout": 504,
    "internal": 500,
}


class RilletError(Exception):
    """Base of every error Rillet raises on purpose."""


class ConfigurationError(RilletError):
    """The configuration cannot work; raised when settings are read."""


class StorageError(RilletError):
    """The database refused or failed an operation."""


class StreamError(RilletError):
    """The stream backend failed (Redis unreachable) or refused an append (a log that lost its
    events, a seq out of order, an already finished run)."""


class LeaseLostError(StreamError):
    """The run's lease belongs to another node now (it took the run over): the old owner must
    stop appending and leave the run's end to the new one."""


class ProtocolError(RilletError):
    """A refusal that reaches a client as `{code, message, retryable}`."""

    code: ClassVar[ErrorCode] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


class UnauthorizedError(ProtocolError):
    code = "unauthorized"


class ForbiddenError(ProtocolError):
    code = "forbidden"


class NotFoundError(ProtocolError):
    code = "not_found"


class InvalidFrameError(ProtocolError):
    code = "invalid_frame"


class TooLargeError(ProtocolError):
    code = "too_large"


class RateLimitedError(ProtocolError):
    code = "rate_limited"
    retryable = True


class BudgetExceededError(ProtocolError):
    code = "budget_exceeded"


class BusyError(ProtocolError):
    code = "busy"
    retryable = True


class ResumeExpiredError(ProtocolError):
    code = "resume_expired"


class ProviderError(ProtocolError):
    code = "provider_error"
    retryable = True


class ToolError(ProtocolError):
    code = "tool_error"


class TimeoutError_(ProtocolError):  # named so it does not shadow the builtin
    code = "timeout"
    retryable = True


class InternalError(ProtocolError):
    code = "internal"
    retryable = True
