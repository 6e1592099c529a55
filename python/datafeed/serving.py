"""serve(): start a datafeed-producer child process from Python."""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Set, Union

from . import errors

if TYPE_CHECKING:
    from .loader import Loader

DEFAULT_PIPELINE = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)"

_counter = 0
_counter_lock = threading.Lock()
# Every producer serve() started and nobody stopped yet: stopped at exit.
# Strong references, so a handle the caller dropped still gets stopped.
_live: Set["Producer"] = set()


class ProducerError(errors.Error, RuntimeError):
    """datafeed-producer could not be found, exited early or failed."""

    code, code_name = 13, "Internal"


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def find_tool(name: str, env: Optional[str] = None) -> str:
    """A datafeed binary: $<env> if set, else the copy inside this package
    (bin/), else one on PATH. Raises ProducerError if none is found."""
    if env and os.environ.get(env):
        path = os.environ[env]
        if not os.access(path, os.X_OK):
            raise ProducerError("$%s=%s is not an executable file" % (env, path))
        return path
    bundled = os.path.join(_package_dir(), "bin", name)
    if os.path.isfile(bundled):
        if not os.access(bundled, os.X_OK):
            try:  # an install that dropped the executable bit
                os.chmod(bundled, os.stat(bundled).st_mode | 0o111)
            except OSError:
                pass
        if os.access(bundled, os.X_OK):
            return bundled
    found = shutil.which(name)
    if found:
        return found
    raise ProducerError(
        "cannot find %s: not in %s, not on PATH%s; build it (cmake --build build --target "
        "datafeed_python) or point %s at it"
        % (name, os.path.join(_package_dir(), "bin"), " and $%s is unset" % env if env else "",
           "$" + env if env else "PATH")
    )


def producer_path() -> str:
    """The datafeed-producer binary serve() runs."""
    return find_tool("datafeed-producer", "DATAFEED_PRODUCER")


def _dataset_flags(dataset: "Union[str, os.PathLike[str]]") -> List[str]:
    """--mnist DIR [--split PREFIX] or --image-folder DIR for a path."""
    path = os.fspath(dataset)
    if not os.path.isdir(path):
        raise errors.InvalidArgument(
            "dataset %r is not a directory: pass an MNIST IDX directory (train-images-idx3-ubyte, "
            "...) or an image folder (one subfolder per class)" % path
        )
    names = os.listdir(path)
    splits = sorted(n[: -len("-images-idx3-ubyte")] for n in names if n.endswith("-images-idx3-ubyte"))
    if splits:
        flags = ["--mnist", path]
        if "train" not in splits:
            flags += ["--split", splits[0]]
        return flags
    if any(os.path.isdir(os.path.join(path, n)) for n in names):
        return ["--image-folder", path]
    raise errors.InvalidArgument(
        "dataset %r is neither an MNIST IDX directory (no *-images-idx3-ubyte file) nor an "
        "image folder (no class subfolders)" % path
    )


def _flag(name: str, value: Any) -> List[str]:
    flag = "--" + name.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    return [flag, str(value)]


def _exit_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn that makes the kernel send the producer SIGTERM when this
    process dies, even by SIGKILL (Linux PR_SET_PDEATHSIG), so a killed
    trainer leaves no producer behind. None where that cannot work: off
    Linux, or off the main thread (the signal follows the *thread* that
    started the child, and a worker thread may end long before the
    process)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        # Runs in the child between fork and exec: resolved above, so this
        # only makes the system call.
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return preexec


def _unique_endpoint() -> str:
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    return "shm://datafeed-py-%d-%d" % (os.getpid(), n)


class Producer:
    """A running datafeed-producer started by serve(). A context manager:
    leaving the ``with`` block stops it. Stopped at interpreter exit too.

    endpoint   where it serves (pass it to datafeed.Loader)
    process    the subprocess.Popen
    log_path   the file its stderr goes to (None when it was inherited)
    """

    def __init__(
        self, args: List[str], endpoint: str, log: Any, env: Optional[Mapping[str, str]], stop_timeout: float
    ) -> None:
        self.args = args
        self.endpoint = endpoint
        self.stop_timeout = stop_timeout
        self.log_path: Optional[str] = None
        self._log_file: Optional[IO[bytes]] = None
        stderr: Any
        if log is None:
            fd, self.log_path = tempfile.mkstemp(prefix="datafeed-producer-", suffix=".log")
            self._log_file = os.fdopen(fd, "wb")
            stderr = self._log_file
        elif log == "inherit":
            stderr = None
        elif isinstance(log, (str, bytes, os.PathLike)):
            path = os.fsdecode(log)
            self.log_path = path
            self._log_file = open(path, "ab")
            stderr = self._log_file
        else:
            stderr = log  # a file object or descriptor
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=env,
            close_fds=True,
            preexec_fn=_exit_with_parent(),
        )
        _live.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the producer wrote to stderr ("" when inherited)."""
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> "Producer":
        """Waits until the endpoint exists (shm segment created / gRPC port
        listening) and the producer handles SIGTERM. Raises ProducerError if
        the producer exits first, and datafeed.Timeout after `timeout`
        seconds."""
        deadline = time.monotonic() + timeout
        seen: Optional[float] = None  # when the endpoint appeared
        while True:
            code = self.process.poll()
            if code is not None:
                self._raise_exited(code)
            if seen is None and self._endpoint_exists():
                seen = time.monotonic()
            # The segment exists a moment before the producer takes over
            # SIGTERM; a stop() in between would kill it without cleanup.
            # So also wait until SIGTERM is blocked or caught (at most 2 s
            # more, for a producer that handles it some other way).
            if seen is not None and (self._handles_sigterm() or time.monotonic() - seen > 2.0):
                return self
            if time.monotonic() >= deadline:
                raise errors.Timeout(
                    "datafeed-producer (pid %d) did not create %s within %.1f s%s"
                    % (self.pid, self.endpoint, timeout, self._tail_suffix())
                )
            time.sleep(0.02)

    def _handles_sigterm(self) -> bool:
        try:
            with open("/proc/%d/status" % self.pid) as f:
                masks = dict(line.split(":", 1) for line in f if line.startswith(("SigBlk", "SigCgt")))
        except (OSError, ValueError):
            return True  # cannot tell (not Linux): do not wait
        bit = 1 << (int(signal.SIGTERM) - 1)
        return any(int(v.strip(), 16) & bit for v in masks.values())

    def _segment_name(self) -> str:
        """The /dev/shm segment behind the endpoint (see WriterOptions::shm_name)."""
        scheme, _, rest = self.endpoint.partition("://")
        if scheme == "shm":
            return rest
        if "--shm-name" in self.args:
            return self.args[self.args.index("--shm-name") + 1]
        return "datafeed-grpc-" + rest.rpartition(":")[2]

    def _endpoint_exists(self) -> bool:
        scheme, _, rest = self.endpoint.partition("://")
        if scheme == "shm":
            return os.path.exists("/dev/shm/datafeed." + rest)
        if scheme in ("grpc", "auto"):
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            if host in ("", "0.0.0.0"):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return True
            except (OSError, ValueError):
                return False
        return True

    def _tail_suffix(self) -> str:
        tail = self.log_tail()
        return (":\n" + tail) if tail else ""

    def _raise_exited(self, code: int) -> None:
        how = "was killed by signal %d" % -code if code < 0 else "exited with status %d" % code
        raise ProducerError(
            "datafeed-producer %s (%s)%s" % (how, " ".join(self.args), self._tail_suffix())
        )

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for the producer to finish (e.g. after its epochs); returns
        its exit status."""
        return self.process.wait(timeout)

    def stop(self, timeout: Optional[float] = None) -> Optional[int]:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`
        seconds (default: stop_timeout). Returns the exit status.
        Idempotent."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc = self.process
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
        if proc.returncode is not None and proc.returncode < 0:
            # Killed before it could clean up: remove its segment, as a new
            # producer of that name would (consumers keep their mapping).
            try:
                os.unlink("/dev/shm/datafeed." + self._segment_name())
            except OSError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _live.discard(self)
        return proc.returncode

    def loader(self, **kwargs: Any) -> "Loader":
        """A datafeed.Loader on this producer's endpoint."""
        from .loader import Loader

        return Loader(self.endpoint, **kwargs)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "exited %s" % self.returncode
        return "datafeed.Producer(pid=%d, endpoint=%r, %s)" % (self.pid, self.endpoint, state)


def serve(
    dataset: "Union[str, os.PathLike[str], None]" = None,
    pipeline: Optional[str] = DEFAULT_PIPELINE,
    batch_size: Optional[int] = 8192,
    threads: Optional[int] = 4,
    endpoint: Optional[str] = None,
    epochs: Optional[int] = None,
    shuffle: bool = False,
    seed: Optional[int] = None,
    linger_ms: Optional[int] = 1000,
    wait: bool = True,
    ready_timeout: float = 30.0,
    stop_timeout: float = 5.0,
    log: Any = None,
    producer: "Union[str, os.PathLike[str], None]" = None,
    env: Optional[Mapping[str, str]] = None,
    **flags: Any
) -> Producer:
    """Starts ``datafeed-producer`` as a child process and returns a
    Producer handle (a context manager). It is stopped when the handle's
    ``with`` block ends, by ``stop()``, at interpreter exit, and -- when
    serve() was called on the main thread -- by the kernel if this process
    is killed.

    dataset      an MNIST IDX directory (-> --mnist DIR) or an image folder
                 with one subfolder per class (-> --image-folder DIR).
    pipeline     the transform spec, default the study's
                 "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)".
    batch_size, threads, epochs (0: endless; None: the producer's default,
                 1), shuffle, seed: the producer's flags of the same names.
    endpoint     where to serve; default $DATAFEED_ENDPOINT, else a fresh
                 shm://datafeed-py-PID-N. The handle's .endpoint says which.
    linger_ms    at the end of the stream, how long the producer waits for
                 late consumers to take what it published (default 1 s, so
                 stop() is quick).
    wait         return only once the endpoint exists (ready_timeout
                 seconds at most); raises ProducerError if it exits first
                 (bad flags, bad dataset), with the producer's message.
    stop_timeout seconds stop() waits after SIGTERM before SIGKILL.
    log          None: the producer's stderr goes to a temporary file
                 (handle.log_path, handle.log_tail()); "inherit": to this
                 process's stderr; a path or file object: there.
    producer     the binary; default $DATAFEED_PRODUCER, else the copy in
                 this package, else datafeed-producer on PATH.
    **flags      any other datafeed-producer flag, '_' for '-':
                 slots=8, max_in_flight=2, image_folder=..., height=28,
                 unordered=True, tls_cert=..., quiet=True, ...
                 (`datafeed-producer --help` lists them).
    """
    binary = os.fspath(producer) if producer else producer_path()
    endpoint = endpoint or os.environ.get("DATAFEED_ENDPOINT") or _unique_endpoint()
    args = [binary, "--endpoint", endpoint]
    if dataset is not None:
        args += _dataset_flags(dataset)
    elif not any(k in flags for k in ("mnist", "image_folder")):
        raise errors.InvalidArgument("serve() needs dataset= (or mnist= / image_folder=)")
    args += _flag("pipeline", pipeline)
    args += _flag("batch_size", batch_size)
    args += _flag("threads", threads)
    args += _flag("epochs", epochs)
    args += _flag("shuffle", shuffle)
    args += _flag("seed", seed)
    args += _flag("linger_ms", linger_ms)
    for name, value in flags.items():
        args += _flag(name, value)
    child_env = dict(os.environ if env is None else env)
    # The producer is told its endpoint explicitly; a stray transport override
    # meant for consumers must not change where it serves.
    child_env.pop("DATAFEED_TRANSPORT", None)
    handle = Producer(args, endpoint, log, child_env, stop_timeout)
    if wait:
        try:
            handle.wait_ready(ready_timeout)
        except BaseException:
            handle.stop()
            raise
    return handle


@atexit.register
def _stop_all() -> None:
    for handle in list(_live):
        try:
            handle.stop()
        except Exception as e:  # never fail interpreter exit
            print("datafeed: stopping %r: %s" % (handle, e), file=sys.stderr)
