"""Exceptions raised by berth: one class per berth_status error code."""

from __future__ import annotations

import builtins
import enum
import errno

__all__ = [
    "Status",
    "Error",
    "InvalidArgumentError",
    "InvalidNameError",
    "NotFoundError",
    "BadBufferError",
    "OutOfMemoryError",
    "InternalError",
    "NotSyncedError",
    "BadSelectorError",
    "TimeoutError",
    "BadRegionError",
    "BadHandleError",
    "ForkedError",
    "ClosedError",
]


class Status(enum.IntEnum):
    """The berth_status codes of capi/berth.h. Values are stable forever."""

    OK = 0
    EMPTY = 1
    ERR_INVALID_ARGUMENT = 2
    ERR_INVALID_NAME = 3
    ERR_NOT_FOUND = 4
    ERR_BAD_BUFFER = 5
    ERR_NO_MEMORY = 6
    ERR_INTERNAL = 7
    ERR_NOT_SYNCED = 8
    ERR_BAD_SELECTOR = 9
    ERR_TIMEOUT = 10
    ERR_BAD_REGION = 11
    ERR_BAD_HANDLE = 12
    ERR_FORKED = 13

    @property
    def c_name(self) -> str:
        """The name berth_status_name() gives this status ("BERTH_OK", ...)."""
        return "BERTH_" + self.name


class Error(Exception):
    """Base of every berth error.

    Attributes:
        message: the detail, from berth_last_error() when the library failed.
        status: the berth_status code (an int, see Status).
        status_name: the name of that code, e.g. "BERTH_ERR_NOT_FOUND".
    """

    default_status: int = Status.ERR_INTERNAL

    def __init__(
        self, message: str = "", status: int | None = None, status_name: str | None = None
    ) -> None:
        if status is None:
            status = type(self).default_status
        if status_name is None:
            try:
                status_name = Status(status).c_name
            except ValueError:
                status_name = "BERTH_UNKNOWN_STATUS"
        # All three go to args so that pickling round-trips the attributes.
        super().__init__(message, status, status_name)
        self.message = message
        self.status = status
        self.status_name = status_name

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]" if self.message else self.status_name


class InvalidArgumentError(Error):
    """BERTH_ERR_INVALID_ARGUMENT: a required argument is missing or out of range."""

    default_status = Status.ERR_INVALID_ARGUMENT


class InvalidNameError(Error):
    """BERTH_ERR_INVALID_NAME: a name is empty where it must not be, too long,
    contains NUL, or is not valid UTF-8 (in Python: a str with lone surrogates)."""

    default_status = Status.ERR_INVALID_NAME


class NotFoundError(Error):
    """BERTH_ERR_NOT_FOUND: the named pool (or shared limiter) does not exist."""

    default_status = Status.ERR_NOT_FOUND


class BadBufferError(Error):
    """BERTH_ERR_BAD_BUFFER: a FlatBuffers buffer failed verification."""

    default_status = Status.ERR_BAD_BUFFER


class OutOfMemoryError(Error):
    """BERTH_ERR_NO_MEMORY: an allocation inside Berth failed.

    Not named NoMemoryError/MemoryError so that it does not shadow the builtin.
    """

    default_status = Status.ERR_NO_MEMORY


class InternalError(Error):
    """BERTH_ERR_INTERNAL: an internal invariant of Berth failed; please report it."""

    default_status = Status.ERR_INTERNAL


class NotSyncedError(Error):
    """BERTH_ERR_NOT_SYNCED: Cache.list/get before the cache's first replace().

    The cache cannot answer yet: read from the API server instead."""

    default_status = Status.ERR_NOT_SYNCED


class BadSelectorError(Error):
    """BERTH_ERR_BAD_SELECTOR: a label selector Kubernetes would reject.

    The message names the byte offset and what was expected, e.g.
    "at byte 7: found ')', expected: identifier"."""

    default_status = Status.ERR_BAD_SELECTOR


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - berth.TimeoutError on purpose
    """BERTH_ERR_TIMEOUT: a blocking wait (Limiter.acquire_blocking) reached its
    deadline; nothing is held.

    Also a builtin TimeoutError (an OSError with errno ETIMEDOUT), so code that
    catches TimeoutError catches it. Not in berth.__all__, so that
    `from berth import *` does not shadow the builtin."""

    default_status = Status.ERR_TIMEOUT

    def __init__(
        self, message: str = "", status: int | None = None, status_name: str | None = None
    ) -> None:
        super().__init__(message, status, status_name)
        # OSError.__init__ read (message, status, status_name) as (errno,
        # strerror, filename) and cut args to two items: put back what
        # Error promises, and a real errno.
        self.args = (message, self.status, self.status_name)
        self.errno = errno.ETIMEDOUT
        self.strerror = message
        self.filename = None


class BadRegionError(Error):
    """BERTH_ERR_BAD_REGION: a shared-memory region exists under the name but is
    not a Berth shared limiter of this layout (foreign, corrupt, or made by
    another version of Berth). Nothing was changed in it.

    Raised by berth.SharedLimiter(name, ...). The region is /dev/shm/berth.<name>;
    remove it (SharedLimiter.unlink(name)) only if you know it is stale."""

    default_status = Status.ERR_BAD_REGION


class BadHandleError(Error):
    """BERTH_ERR_BAD_HANDLE: the library was given a handle that is not live
    (freed, of another type, or never made by Berth). Through this package
    it shows as its subclass ClosedError: objects refuse calls after close()
    before they reach the library."""

    default_status = Status.ERR_BAD_HANDLE


class ForkedError(Error):
    """BERTH_ERR_FORKED: this process was forked from the one that made the
    Engine, Cache, Limiter or Bucket, whose state stays with that process (a
    copy of a warm pool would hand out the parent's sandboxes twice, a copy of
    a limiter would count permits held by threads that do not exist here).
    Make a new one in this process, e.g. after the fork in each worker;
    close() of the inherited one only drops it here. Selectors and
    SharedLimiters work in a forked child."""

    default_status = Status.ERR_FORKED


class ClosedError(BadHandleError):
    """The Engine, Cache, Selector, Limiter, SharedLimiter or Bucket was closed;
    raised by every method called after close(), and by waits on a Limiter or
    SharedLimiter that close() interrupted.

    Raised by the binding before the call reaches the library; status is
    BERTH_ERR_BAD_HANDLE, what the library answers for a freed handle."""

    default_status = Status.ERR_BAD_HANDLE
