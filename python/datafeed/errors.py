"""Exceptions: one class per datafeed status code, all under datafeed.Error.

str(exception) is the library's message, which says what went wrong and
what to do ("shm://feed0: the producer died without closing the stream;
restart it and reconnect"). Each class also derives from the closest
built-in exception, so generic handlers work too (``except TimeoutError``,
``except ConnectionError``, ``except ValueError``).
"""


class Error(Exception):
    """A datafeed error. `code` is the C ABI status code, `code_name` its
    name ("Unavailable", "DataLoss", ...)."""

    code = 13
    code_name = "Internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(Error, ValueError):
    """A bad endpoint, option or argument."""

    code, code_name = 1, "InvalidArgument"


class NotFound(Error, LookupError):
    """No producer at the endpoint (within the connect timeout), a missing
    file or tensor."""

    code, code_name = 2, "NotFound"


class AlreadyExists(Error):
    code, code_name = 3, "AlreadyExists"


class ResourceExhausted(Error, MemoryError):
    code, code_name = 4, "ResourceExhausted"


class Timeout(Error, TimeoutError):
    """No batch arrived within the Loader's timeout. The stream goes on: the
    next iteration may succeed."""

    code, code_name = 5, "DeadlineExceeded"


DeadlineExceeded = Timeout


class Unavailable(Error, ConnectionError):
    """The producer died or cannot be reached."""

    code, code_name = 6, "Unavailable"


class DataLoss(Error):
    """A malformed batch frame."""

    code, code_name = 7, "DataLoss"


class EndOfStream(Error):
    """The producer closed the stream. A Loader turns this into the end of
    iteration; it is raised only by APIs that return one batch."""

    code, code_name = 8, "EndOfStream"


class Cancelled(Error):
    """The Loader was closed (or stopped) while waiting."""

    code, code_name = 9, "Cancelled"


class FailedPrecondition(Error):
    code, code_name = 10, "FailedPrecondition"


class Unimplemented(Error, NotImplementedError):
    code, code_name = 11, "Unimplemented"


class IoError(Error, OSError):
    """An operating-system call failed (named IoError to leave the built-in
    IOError alone)."""

    code, code_name = 12, "IOError"


class Internal(Error):
    """A bug in datafeed."""

    code, code_name = 13, "Internal"


class Aborted(Error, RuntimeError):
    """The producer ended this consumer's session: it took back batches the
    trainer already had (the trainer did not ask for a batch for longer than
    the producer's --consumer-timeout), or another Loader took over this
    consumer. Restore the last checkpoint (load_state_dict) and go on."""

    code, code_name = 14, "Aborted"


class LibraryError(Error, ImportError):
    """libdatafeed_c.so is missing, cannot be loaded, or does not match."""

    code, code_name = 13, "Internal"


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        ResourceExhausted,
        Timeout,
        Unavailable,
        DataLoss,
        EndOfStream,
        Cancelled,
        FailedPrecondition,
        Unimplemented,
        IoError,
        Internal,
        Aborted,
    )
}


def from_code(code: int, message: str) -> Error:
    """The exception for a C ABI status code."""
    cls = _BY_CODE.get(code, Error)
    return cls(message)
