"""The one error type of the protocol layer.

Every failure a client can cause, from a malformed byte to a forbidden operation,
is a KmipError carrying the Result Status and Result Reason it becomes on the wire.
Handlers raise it; the front end turns it into a failed batch item. The message is
short and safe to send to the client: it never holds key material.
"""

from __future__ import annotations

from .tables import ResultReason, ResultStatus


class KmipError(Exception):
    """A failure that becomes a KMIP response with this status and reason."""

    def __init__(
        self,
        reason: ResultReason,
        message: str,
        status: ResultStatus = ResultStatus.OPERATION_FAILED,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"KmipError({self.reason.name}, {self.message!r})"


def invalid_message(message: str) -> KmipError:
    """The bytes are not a well-formed TTLV message (KMIP 1.4 section 11)."""
    return KmipError(ResultReason.INVALID_MESSAGE, message)


def invalid_field(message: str) -> KmipError:
    """Well-formed TTLV, but a field is not what the operation allows."""
    return KmipError(ResultReason.INVALID_FIELD, message)
