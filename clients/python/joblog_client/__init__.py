"""Drop-in replacement for the pipeline's in-process ``JobLogger``, talking to
the joblogd daemon over its Unix socket. Standard library only; typed
(``py.typed``, checked with ``mypy --strict``).

Switching is a one-line import change::

    # from yt_study_buddy.job_logger import JobLogger, create_default_logger
    from joblog_client import JobLogger, create_default_logger

Same methods, same return shapes: ``log_job``, ``log_jobs_batch``,
``get_all_jobs``, ``get_failed_jobs``, ``get_successful_jobs``,
``get_jobs_by_stage``, ``get_statistics``, ``export_csv``, ``clear_log``, the
``log_file`` attribute; plus ``flush``, ``retry_candidates``, ``ping``, and
``with JobLogger(...) as lg:`` (flushes, best effort, and closes on exit).
``JobLogHandler`` sends the job a ``logging`` record carries
(``extra={"job": {...}}``).

Logging never raises and never blocks the pipeline much longer than
``timeout``: if the daemon cannot be reached, records go to a local spool
file (NDJSON) and are replayed, in order, once the daemon answers a ``ping``
again (retried with a backoff of 0.5 s doubling to 30 s; calls in between
only append to the spool). Each record gets its ``logged_at`` when it is
logged (``datetime.now().isoformat()``, one value per call, as the old
logger), so a spooled record keeps the time it was logged. Failures are
reported through the ``logging`` module (logger ``joblog_client``).
Queries do need the daemon and raise ``JobLogUnavailable`` without it.

Errors: what the daemon fails (or cannot be reached for) raises a
``JobLogError``. ``JobLogUnavailable`` (also a ``ConnectionError``): the daemon cannot be
reached, its message says which socket was tried and how to start the
daemon. ``JobLogForbidden`` (also a ``PermissionError``): the daemon
refused this user (``forbidden``). ``JobLogRequestError`` (also a
``RuntimeError``): any other error reply; ``.code`` and ``.message`` are
the daemon's.

Pipelined (the default): ``log_job`` queues the record and returns; a
sender thread writes what has queued as one request, a reader thread
collects the acknowledgements. Records not yet
acknowledged stay in a bounded window (``_WINDOW`` records,
``_WINDOW_BYTES``) and are sent again after a reconnect, or spooled (in
order, ahead of newer records) if the daemon stalls or cannot be
reached. ``flush()`` returns once every record is acknowledged; queries
first wait for the window; closing the logger and interpreter exit wait
for it up to ``timeout``, then spool what is left. ``durable=True``:
``log_job`` returns only after the daemon's durable acknowledgement.
protocol.md, The Python client, has the whole design.

Delivery: a record acknowledged by the daemon is on disk. Each record is
given a ``record_id`` (a UUIDv7, unless the job has one), kept in the
record. A record whose acknowledgement was lost (the daemon was killed
after reading it, or stalled past the timeout) is spooled and sent again
with the same id, and the daemon, which already holds it, answers it as a
duplicate instead of writing it twice. The spool is only sent to a daemon that has just answered a
``ping``, so a stalled daemon is not sent the same records again and again.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import glob
import hashlib
import itertools
import json
import logging
import multiprocessing.util
import os
import select
import socket
import stat
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar, Union

# Follows the joblogd crate's version (Cargo.toml); a test checks it.
__version__ = "0.1.0"

__all__ = ["JobLogger", "JobLogHandler", "JobLogError", "JobLogUnavailable", "JobLogForbidden",
           "JobLogRequestError", "SupportsToJson", "create_default_logger", "default_socket_path",
           "default_spool_dir", "__version__"]


class SupportsToJson(Protocol):
    """A job object: ``to_json()`` returns a dict, or a JSON string or bytes
    of one (the pipeline's ``ProcessingJob``)."""

    def to_json(self) -> Any: ...


# A job: a dict (any mapping of str keys) or an object with ``to_json()``.
Job = Union[Mapping[str, Any], SupportsToJson]
# A request or a reply: a JSON object.
Reply = Dict[str, Any]
StrPath = Union[str, "os.PathLike[str]"]
_L = TypeVar("_L", bound="JobLogger")

log = logging.getLogger("joblog_client")

DEFAULT_LOG_FILE = Path("notes") / "processing_log.json"
# A log_batch request carries at most this many records and, past its first
# record, at most about this many bytes of them: far under the daemon's
# default line limit (16 MiB), so big records never make a request too long.
_BATCH = 1000
_BATCH_BYTES = 4 << 20
# Refusals that say nothing about the records: keep them (spool) and send
# them again later. `forbidden` is a setup problem (socket group, --allow-uid)
# that an administrator fixes; the records must survive it.
_TRANSIENT = ("write_failed", "shutting_down", "forbidden")
# Refusals caused by what one of the records holds: the batch is split to
# find the record at fault. Any other refusal is about the request itself,
# the same for any split, and is logged once for the batch.
_RECORD_FAULTS = ("invalid_json", "invalid_utf8", "not_an_object", "too_deep",
                  "line_too_long", "record_too_large")
# Seconds added to the timeout of a log_batch per byte it carries (the daemon
# acknowledges after fdatasync): a slow ack that times out would be sent
# again, and logged twice.
_TIMEOUT_PER_BYTE = 1 / 10e6
# After the daemon could not be reached, the spool is not sent again for
# this long, doubling on each failure up to _BACKOFF_MAX: calls meanwhile
# only append to the spool, so an outage costs each call O(1).
_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 30.0
# How long the ping that must answer before a spool is sent may take.
_PROBE_TIMEOUT = 1.0
# Spools left by processes that died are looked for this often.
_ORPHAN_CHECK = 60.0
# The pipelined window: records sent and not yet acknowledged, at most this
# many and about this many bytes (a request bigger than that alone is let in
# when the window is empty). When it is full, log_job waits for acks.
_WINDOW = 1000
_WINDOW_BYTES = 8 << 20
# The reader thread sleeps this long after acks arrive before reading them.
_ACK_GATHER = 0.002
# The pipelined connection's threads: its reader and its sender.
_PIPE_THREADS = ("joblog-acks", "joblog-send")


# Spool files this process has open right now. A child forked meanwhile
# inherits their descriptors, and with them the flock a thread of the parent
# holds: the lock belongs to the open file, so it would stay held for the
# child's whole life and stop the parent's logging. See _release_inherited.
_open_spools: set[_Tracked] = set()
# Held while a spool file is opened and registered, or unregistered and
# closed, and by a forking thread around fork(): so a child never inherits a
# spool descriptor that is not in _open_spools.
_fork_guard = threading.Lock()
# Every logger, so that a forked child can set each one up again at once,
# before any thread of the child can use the parent's state.
_loggers: weakref.WeakSet[JobLogger] = weakref.WeakSet()
# The spool files (prefix and pid) this process may have records in: every
# log_job asks whether its spool is pending, and a process that never
# spooled (nor found a spool under its pid) answers without a system call.
_maybe_spooled: set[str] = set()
# Random bytes for record ids (see _random80): a pool per thread.
_random = threading.local()
_RANDOM_POOL = 4000


def _release_inherited() -> None:
    """In a forked child: points the inherited spool descriptors at
    /dev/null, which lets go of the parent's locks (closing them instead
    could flush bytes the parent had buffered into the spool a second
    time, and a reused descriptor number could take them elsewhere), then
    gives every logger the child's own state."""
    for f in list(_open_spools):
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, f.fileno())
            finally:
                os.close(null)
        except (OSError, ValueError):
            pass
    _open_spools.clear()
    _maybe_spooled.clear()
    for lg in list(_loggers):
        lg._forked()


def _after_fork_in_child() -> None:
    _fork_guard.release()
    _release_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_fork_guard.acquire,
        after_in_parent=_fork_guard.release,
        after_in_child=_after_fork_in_child,
    )


class _Tracked:
    """``with _Tracked(path, flags) as fd``: a spool file opened (mode
    0600, never through a symbolic link), registered in _open_spools while
    open, unregistered and closed after, both under _fork_guard."""

    def __init__(self, path: StrPath, flags: int) -> None:
        with _fork_guard:
            self.fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            _open_spools.add(self)

    def fileno(self) -> int:
        return self.fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        with _fork_guard:
            _open_spools.discard(self)
            os.close(self.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _dir_stat(path: StrPath) -> os.stat_result | None:
    """``stat`` of directory ``path``, following a symbolic link only if
    the link itself belongs to this user or root (another user's link
    could point anywhere); None if it is no such directory."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in (os.getuid(), 0):
                return None
            st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISDIR(st.st_mode) else None


def _is_private_dir(path: StrPath, ours: bool = False) -> bool:
    """Is ``path`` a directory that no other user controls: owned by this
    user (or, unless ``ours``, by root) and writable by no one else, group
    included? Spool files hold whole records: in a directory another user
    can write to, that user could read them (by creating a file under the
    name a process will spool to before it does), remove them, or make
    records go elsewhere."""
    st = _dir_stat(path)
    owners = (os.getuid(),) if ours else (os.getuid(), 0)
    return (st is not None and st.st_uid in owners
            and not st.st_mode & (stat.S_IWOTH | stat.S_IWGRP))


def _is_shared_tmp(path: StrPath) -> bool:
    """A directory like /tmp: writable by others, sticky (no one removes
    or renames another's entries) and owned by this user or root."""
    st = _dir_stat(path)
    return bool(st is not None and st.st_uid in (os.getuid(), 0)
                and st.st_mode & (stat.S_IWOTH | stat.S_IWGRP) and st.st_mode & stat.S_ISVTX)


def _still_at(fd: int, path: StrPath) -> bool:
    """Is the file open as ``fd`` still the one at ``path``? (Locked only
    after opening: another process may have replayed and removed or
    replaced it meanwhile.)"""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


class JobLogError(Exception):
    """Base class of every error this client raises."""


class JobLogUnavailable(JobLogError, ConnectionError):
    """The daemon could not be reached, or cannot take records now (raised
    by queries and ``flush``; logging spools instead). When no connection
    could be made, the message names the socket tried and how to start the
    daemon."""


class JobLogForbidden(JobLogError, PermissionError):
    """The daemon refused this user (``forbidden``): a setup matter, so the
    message names the daemon's options that decide. ``code`` and
    ``message`` are the daemon's."""

    code = "forbidden"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(
            f"joblogd refused this request: {message} "
            "(who may connect is set by joblogd's --allow-uid / --allow-gid and the "
            "socket's group; who may clear by --admin-uid / --admin-gid)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))


# What to do about an error reply, by code (protocol.md, Errors).
_HINTS = {
    "write_failed": "the daemon cannot write its log (a full or failing disk?): see its own log "
                    "(`journalctl -u joblogd`) and `joblogctl ping`",
    "shutting_down": "the daemon is stopping: try again once it is back",
    "unknown_op": "the daemon may be older than this client: upgrade joblogd",
    "invalid_request": "the daemon may be older than this client: upgrade joblogd",
}


class JobLogRequestError(JobLogError, RuntimeError):
    """The daemon answered a request with an error other than
    ``forbidden``: ``code`` (stable: protocol.md, Errors) and ``message``
    (for humans) are the daemon's. Also a ``RuntimeError``, as this
    client raised before."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        hint = _HINTS.get(code)
        super().__init__(f"joblogd refused the request ({code}): {message}" + (f"; {hint}" if hint else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


def _raise_for(reply: Reply) -> None:
    """Raises for an error reply: JobLogForbidden (a PermissionError) for
    ``forbidden``, JobLogRequestError (a RuntimeError) for anything else."""
    if reply.get("ok"):
        return
    err = reply.get("error")
    if not isinstance(err, dict):
        err = {}
    code = str(err.get("code") or "error")
    message = str(err.get("message") or code)
    if code == "forbidden":
        raise JobLogForbidden(message)
    raise JobLogRequestError(code, message)


class _BackingOff(JobLogUnavailable):
    """The daemon was unreachable moments ago; not tried again yet."""


# Where the shipped systemd units put the socket.
SYSTEM_SOCKET = "/run/joblogd/joblogd.sock"


def _own_default_socket() -> str:
    """The daemon's own default: ``$XDG_RUNTIME_DIR/joblogd.sock``, else
    ``/tmp/joblogd-<uid>.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "joblogd.sock")
    return f"/tmp/joblogd-{os.getuid()}.sock"


def _planted(path: str) -> bool:
    """Is ``path`` a socket in a directory anyone may write to (``/tmp``)
    that belongs to neither this user nor root? Another user could have
    put it there first, to read and answer what a worker sends."""
    try:
        st = os.lstat(path)
        shared = os.stat(os.path.dirname(path) or ".").st_mode & 0o002
    except OSError:
        return False
    return bool(shared) and st.st_uid not in (os.getuid(), 0)


def default_socket_path() -> str:
    """``$JOBLOGD_SOCKET``; else the daemon's per-user default
    (``$XDG_RUNTIME_DIR/joblogd.sock``, else ``/tmp/joblogd-<uid>.sock``)
    when a socket is there; else the systemd units' ``/run/joblogd/
    joblogd.sock`` when one is there; else the per-user default (records
    spool until a daemon listens), as ``joblogctl`` finds it."""
    if os.environ.get("JOBLOGD_SOCKET"):
        return os.environ["JOBLOGD_SOCKET"]
    own = _own_default_socket()
    if os.path.exists(own) and not _planted(own):
        return own
    if os.path.exists(SYSTEM_SOCKET):
        return SYSTEM_SOCKET
    return own


def default_spool_dir(socket_path: StrPath) -> Path:
    """Where records wait while the daemon is unreachable: beside the socket
    when this process may write there, else ``$XDG_STATE_HOME/joblog``
    (``~/.local/state/joblog``), else ``/var/tmp/joblog-spool-<uid>``. The
    socket's directory under systemd (``/run/joblogd``) belongs to the
    daemon's user, so workers running as another user spool elsewhere.
    (A directory other users may write to, such as ``/tmp``, is not used
    as it is: see ``JobLogger._spool_home``.)"""
    beside = Path(socket_path).parent
    if os.access(beside, os.W_OK | os.X_OK):
        return beside
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        home = os.path.expanduser("~")
        if home != "~" and os.access(home, os.W_OK | os.X_OK):
            state = os.path.join(home, ".local", "state")
    if state:
        return Path(state) / "joblog"
    return Path("/var/tmp") / f"joblog-spool-{os.getuid()}"


def _as_dict(job: Any) -> Any:
    """A job may be a dict or any object with ``to_json()`` (returning a
    dict or a JSON string)."""
    if hasattr(job, "to_json") and not isinstance(job, dict):
        job = job.to_json()
        if isinstance(job, (str, bytes)):
            job = json.loads(job)
    return job


# ensure_ascii=False as the old logger wrote; default=str so an odd value (a
# Path, a datetime) never makes logging fail. One encoder for every call:
# json.dumps with options builds a new one each time (about 2 µs).
_dumps = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode


def _batch_bounds(parts: Sequence[bytes]) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive batches of ``parts`` (serialized
    records): at most _BATCH records and, past the first, _BATCH_BYTES."""
    bounds, start, size = [], 0, 0
    for i, p in enumerate(parts):
        if i > start and (i - start >= _BATCH or size + len(p) > _BATCH_BYTES):
            bounds.append((start, i))
            start, size = i, 0
        size += len(p) + 1
    if start < len(parts):
        bounds.append((start, len(parts)))
    return bounds


def _encode(record: Any) -> bytes:
    """One record as the line bytes sent (and spooled): UTF-8, as the old
    logger wrote. A string with a lone surrogate, which UTF-8 cannot hold,
    is written with \\u escapes instead, which the daemon keeps as they are."""
    try:
        return _dumps(record).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True, default=str, separators=(",", ":")).encode("ascii")


def _random80() -> int:
    """80 random bits from os.urandom, read ``_RANDOM_POOL`` bytes at a time
    (one system call per call would release the GIL, and a logging thread
    then waits for the sender and reader threads to hand it back). The pool
    is per thread and per process (a forked child never reuses its
    parent's bytes, hooks or not); a pool and its counter are replaced together, and
    ``next`` on the counter is atomic, so a signal handler that logs in the
    middle of this never gets the same bytes."""
    pool: tuple[int, bytes, Callable[[], int]] | None = getattr(_random, "pool", None)
    if pool is not None and pool[0] == os.getpid():
        at = pool[2]()
        if at + 10 <= len(pool[1]):
            return int.from_bytes(pool[1][at:at + 10], "big")
    buf = os.urandom(_RANDOM_POOL)
    _random.pool = (os.getpid(), buf, itertools.count(10, 10).__next__)
    return int.from_bytes(buf[:10], "big")


def _uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random
    bits, so ids sort roughly by time and never repeat."""
    ms = time.time_ns() // 1_000_000
    rand = _random80()
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) \
        | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"  # str(uuid.UUID(int=value)), without its cost
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _stamp_and_encode(jobs: Iterable[Job]) -> list[bytes]:
    """The jobs as the lines sent (and spooled), each given a ``record_id``
    unless it has one, then ``logged_at`` now unless it has one (one value
    for the whole call, added last, as the old logger did), so a record
    that waits in the spool keeps its id and the time it was logged. A job that cannot be serialized (a broken
    ``to_json()``, a circular reference, a tuple key) is logged as an error
    and left out: it never costs the others."""
    stamp = datetime.now().isoformat()
    parts = []
    for job in jobs:
        try:
            record = _as_dict(job)
            if isinstance(record, dict) and ("record_id" not in record or "logged_at" not in record):
                record = dict(record)  # the caller's dict is left as it was
                if "record_id" not in record:
                    record["record_id"] = _uuid7()
                if "logged_at" not in record:
                    record["logged_at"] = stamp
            parts.append(_encode(record))
        except Exception:
            log.exception("cannot serialize a job (%s); it was not logged", _describe_job(job))
    return parts


def _describe_job(job: object) -> str:
    """A job that could not be serialized, for the error log."""
    try:
        vid = job.get("video_id") if isinstance(job, dict) else getattr(job, "video_id", None)
    except Exception:
        vid = None
    return f"video_id {vid!r}" if vid is not None else type(job).__name__


def _describe(part: bytes) -> str:
    """A refused record, for the error log: its video_id, or its size."""
    try:
        vid = json.loads(part).get("video_id")
    except (ValueError, AttributeError):
        vid = None
    return f"video_id {vid!r}" if vid is not None else f"{len(part)} bytes"


def _connect(path: str, timeout: float) -> socket.socket:
    """A connected socket to the daemon at ``path`` (closed again if the
    connect fails)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class _Conn:
    """One connection: line out, line (or bytes) in."""

    def __init__(self, path: str, timeout: float) -> None:
        self.sock = _connect(path, timeout)
        self.file = self.sock.makefile("rb")

    def request(self, obj: Reply | bytes, timeout: float) -> Reply:
        """``obj`` is a dict, or a request line already serialized (bytes)."""
        self.sock.settimeout(timeout)
        line = obj if isinstance(obj, bytes) else _dumps(obj).encode("utf-8")
        try:
            self.sock.sendall(line + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may have answered and closed already (a refused
            # peer gets one `forbidden` line): read that answer, if any.
            pass
        return self.read_reply()

    def read_reply(self) -> Reply:
        line = self.file.readline()
        if not line:
            raise ConnectionError("joblogd closed the connection")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ValueError(f"joblogd answered with no JSON object: {line[:200]!r}")
        return reply

    def read_bytes(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise ConnectionError("joblogd closed the connection mid-answer")
        return data

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


class _Refused(Exception):
    """The daemon answered a pipelined request with an error."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"joblogd refused a request: {reply.get('error')}")
        self.reply = reply


class _InFlight:
    """A pipelined log_batch request not yet acknowledged: its records (with
    their record_ids) and the time by which its reply is due."""

    __slots__ = ("parts", "size", "due")

    def __init__(self, parts: list[bytes], size: int, due: float) -> None:
        self.parts = parts
        self.size = size
        self.due = due


class _Pipe:
    """The pipelined connection. The logging thread only queues a call's
    records (``put``, under the logger's lock) and returns; a sender thread
    takes what has queued meanwhile, moves it into the FIFO ``window`` as
    one log_batch request and writes it, so a hot loop pays neither the
    system call nor the request's framing per record (calls coalesce while
    a send is under way). A reader thread matches the replies, which come
    in request order, to the window. Neither thread touches the logger: on
    an error reply, a broken connection, a send that fails or a reply
    overdue (``timeout`` after the request was sent or became the oldest)
    ``failed`` is set and both stop; the logger then takes what is left,
    queued or in the window, in order (see JobLogger._settle)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.pid = os.getpid()
        self.timeout = timeout
        self.sock = _connect(path, timeout)
        self.lock = lock = threading.Lock()
        # Waited on by the logging thread (room, idle) and by _settle.
        self.cond = threading.Condition(lock)
        # Waited on by the sender alone, so a put wakes only it.
        self.wake = threading.Condition(lock)
        self.queue: list[bytes] = []
        self.window: deque[_InFlight] = deque()
        # Records and bytes queued or in flight: what the window bound counts.
        self.records = 0
        self.bytes = 0
        self.failed: BaseException | None = None
        self.closed = False
        self.sending = True
        # log_batch requests written (for tests: calls coalesce).
        self.requests = 0
        # Threads still using the socket: the last one out closes it once
        # the pipe is closed, so its descriptor is never reused under the other.
        self.users = 2
        for target, name in zip((self._read, self._send), _PIPE_THREADS):
            threading.Thread(target=target, name=name, daemon=True).start()

    def room(self, n: int, size: int) -> bool:
        """Is there room for ``n`` more records of ``size`` bytes?"""
        return self.records == 0 or (self.records + n <= _WINDOW and self.bytes + size <= _WINDOW_BYTES)

    def idle(self) -> bool:
        """Is every record put acknowledged? (Called with ``cond`` held.)"""
        return self.records == 0

    def put(self, parts: list[bytes], size: int) -> bool:
        """Queues the records (``size``: their bytes) for the sender. A pipe
        that failed takes nothing and says so: the caller settles it, then
        sends them itself."""
        with self.lock:
            if self.failed is not None:
                return False
            self.queue += parts
            self.records += len(parts)
            self.bytes += size
            if not self.sending:
                self.sending = True
                self.wake.notify()
        return True

    def fail(self, e: BaseException) -> None:
        with self.cond:
            if self.failed is None:
                self.failed = e
            self.cond.notify_all()
            self.wake.notify_all()

    def _send(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.closed and self.failed is None:
                        self.sending = False
                        self.wake.wait()
                    if self.closed or self.failed is not None:
                        return
                    n, size = 0, 0
                    for p in self.queue:
                        if n and (n >= _BATCH or size + len(p) > _BATCH_BYTES):
                            break
                        n += 1
                        size += len(p) + 1
                    parts = self.queue[:n]
                    del self.queue[:n]
                    # Into the window before it is written: its reply can
                    # come before sendall returns.
                    self.window.append(_InFlight(parts, size, time.monotonic() + self.timeout
                                                 + size * _TIMEOUT_PER_BYTE))
                self.requests += 1
                self.sock.sendall(b'{"op":"log_batch","ack":true,"jobs":[' + b",".join(parts) + b"]}\n")
        except BaseException as e:  # noqa: BLE001 — handed to the logger, never lost
            self.fail(e)
        finally:
            self._leave()

    def _leave(self) -> None:
        with self.cond:
            self.users -= 1
            last = self.users == 0 and self.closed
        if last:
            self.sock.close()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                with self.cond:
                    if self.closed or self.failed is not None:
                        return
                    head = self.window[0] if self.window else None
                now = time.monotonic()
                if head is not None and now >= head.due:
                    raise socket.timeout(f"no acknowledgement from joblogd within {self.timeout:g} s")
                wait = self.timeout if head is None else head.due - now
                ready, _, _ = select.select([self.sock], [], [], wait)
                if not ready:
                    continue
                # Let more acks arrive before taking the GIL to read them:
                # one wake-up for many replies, not one per request, leaves
                # the logging thread alone (acks are late by this at most).
                time.sleep(_ACK_GATHER)
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("joblogd closed the connection")
                buf += chunk
                *lines, buf = buf.split(b"\n")
                with self.cond:
                    for line in lines:
                        # An ok reply ends so (keys are sorted; a quote in a
                        # string is escaped), so most are never parsed.
                        if not line.endswith(b'"ok":true}'):
                            reply = json.loads(line)
                            if not isinstance(reply, dict):
                                raise ValueError(f"joblogd answered with no JSON object: {line[:200]!r}")
                            if not reply.get("ok"):
                                raise _Refused(reply)
                        if not self.window:
                            raise ValueError("joblogd answered a request never sent")
                        done = self.window.popleft()
                        self.records -= len(done.parts)
                        self.bytes -= done.size
                    if self.window:
                        # Its reply is due `timeout` after it became the oldest.
                        nxt = self.window[0]
                        nxt.due = max(nxt.due, time.monotonic() + self.timeout + nxt.size * _TIMEOUT_PER_BYTE)
                    self.cond.notify_all()
        except BaseException as e:  # noqa: BLE001 — handed to the logger, never lost
            self.fail(e)
        finally:
            self._leave()

    def take(self) -> list[bytes]:
        """Closes the pipe and returns the records not acknowledged, in
        order: those in flight, then those still queued."""
        with self.cond:
            self.closed = True
            if self.failed is None:
                self.failed = ConnectionError("closed")
            parts = [p for e in self.window for p in e.parts] + self.queue
            self.window.clear()
            self.queue = []
            self.records = self.bytes = 0
            self.cond.notify_all()
            self.wake.notify_all()
        self.close()
        return parts

    def close(self) -> None:
        """Wakes both threads (the last to end closes the socket, so its
        descriptor is never reused under the other), or closes the socket
        if both are done. Only called in the process that opened it:
        shutdown in a forked child would cut the parent's connection too."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.cond:
            self.closed = True
            self.wake.notify_all()
            users = self.users
        if users == 0:
            self.sock.close()


class _Held:
    """A hold of a logger's lock (see JobLogger._locked): a class rather
    than a generator, as it is taken on every call (about 1 µs less)."""

    __slots__ = ("lg", "lock", "outermost")

    def __init__(self, lg: JobLogger) -> None:
        self.lg = lg
        # The lock taken is the one released, even if a fork hook gave
        # the logger a new one meanwhile.
        self.lock = lg._lock
        self.outermost = False

    def __enter__(self) -> None:
        lg = self.lg
        self.lock.acquire()
        try:
            self.outermost = lg._holder is None
            if self.outermost:
                lg._holder = threading.get_ident()
        except BaseException:
            # A KeyboardInterrupt between the acquire and the `with`: the
            # lock must not stay held (no __exit__ will run).
            self.lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        lg = self.lg
        try:
            if self.outermost:
                try:
                    while lg._deferred:
                        parts, lg._deferred = lg._deferred, []
                        lg._log_parts(parts)
                except Exception:
                    log.exception("logging failed unexpectedly")
                finally:
                    lg._holder = None
        finally:
            self.lock.release()


class JobLogger:
    """Logs job records to joblogd and answers the old logger's queries.

    ``log_file`` is accepted (first positional argument, as before) for
    compatibility; the daemon decides the file, and a warning is logged if
    it serves another one. ``log_file`` the attribute is the daemon's file.

    ``with JobLogger(...) as lg:`` sends what is spooled on leaving the
    block (best effort, waiting about ``timeout`` at most, never raising)
    and closes the connection.

    ``durable``: False (the default) pipelines logging (``log_job``
    returns once the request is written; ``flush()`` waits for every
    acknowledgement); True returns from each call after the durable ack.
    """

    def __init__(self, log_file: StrPath | None = None, socket_path: StrPath | None = None,
                 timeout: float = 2.0, spool_dir: StrPath | None = None, *,
                 durable: bool = False) -> None:
        self.durable = bool(durable)
        self._pipe: _Pipe | None = None
        # Found, not given: a socket another user planted there is refused
        # at every connect (the records spool meanwhile).
        self._socket_found = socket_path is None and not os.environ.get("JOBLOGD_SOCKET")
        self.socket_path = str(socket_path or default_socket_path())
        self.timeout = float(timeout)
        self.query_timeout = max(self.timeout, 60.0)
        self._requested_log_file = Path(log_file) if log_file is not None else None
        self.log_file = self._requested_log_file or DEFAULT_LOG_FILE
        self.spool_dir = Path(spool_dir) if spool_dir else default_spool_dir(self.socket_path)
        # Where spool files really go (see _spool_home), once known.
        self._home: Path | None = None
        # Spool files name the daemon they are for (a hash of its socket's
        # path): two daemons whose sockets share a directory must never
        # replay each other's records.
        tag = hashlib.sha256(os.path.abspath(self.socket_path).encode()).hexdigest()[:12]
        self._spool_prefix = f"joblog-spool-{tag}-"
        self._pid: int | None = None
        self._lock = threading.RLock()
        self._holder: int | None = None
        self._deferred: list[bytes] = []
        self._conn: _Conn | None = None
        self._backoff = 0.0
        self._down_until = 0.0
        self._orphans_due = 0.0
        self._forked()
        _loggers.add(self)
        atexit.register(_replay_at_exit, weakref.ref(self))
        # A multiprocessing child ends with os._exit, which skips atexit,
        # after running multiprocessing's own finalizers: registered anew
        # in each child (a registration made before the fork is cleared).
        multiprocessing.util.register_after_fork(self, _at_child_exit)
        try:
            reply = self._ping()
            if not reply.get("ok"):
                err = reply.get("error") or {}
                log.warning("joblogd at %s refuses this process (%s: %s); records will be spooled until it does not",
                            self.socket_path, err.get("code"), err.get("message"))
        except JobLogUnavailable as e:
            # A failure like any other: the first records spool at once
            # instead of waiting for the timeout again.
            self._mark_down()
            log.warning("joblogd not reachable at %s (%s); records will be spooled until it is", self.socket_path, e)

    # -- connection -------------------------------------------------------

    def _forked(self) -> None:
        """Per-process state, set up again in a forked child (a worker of a
        multiprocessing pool, say): the parent's connection, lock and spool
        file are not the child's to use. A spool file is replayed by others
        only once its process is gone, so a child that wrote into its
        (living) parent's would leave its records there. The fork hook
        calls it in every child; the pid is checked on every call too, for
        a child forked without Python's hooks (by C code)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        # The parent's lock may be held by one of its threads, which the
        # child does not have: it would never be released. (Replaced before
        # the pid is recorded: a thread that sees our pid must see the new
        # lock. In a child this runs from the fork hook, before any thread
        # of the child can log.)
        self._lock = threading.RLock()
        self._holder = None
        self._deferred = []
        self._conn = None
        # The parent's pipelined connection, window and reader thread are
        # the parent's: its records are its to settle.
        self._pipe = None
        self._backoff = 0.0
        self._down_until = 0.0
        self._orphans_due = 0.0
        self._pid = pid

    def _locked(self) -> _Held:
        """The logger's lock (re-entrant), for a ``with``. On leaving the
        outermost hold, records that a signal handler logged meanwhile on
        this thread (see log_jobs_batch) are logged."""
        return _Held(self)

    @property
    def spool_file(self) -> Path:
        """This process's spool file."""
        return (self._home or self.spool_dir) / f"{self._spool_prefix}{self._pid or os.getpid()}.ndjson"

    def _spool_home(self, create: bool) -> Path | None:
        """The directory spool files go to, or None if there is none yet
        (and not ``create``): ``spool_dir`` when no other user controls it
        (see _is_private_dir); in a shared directory such as /tmp, this
        user's own ``joblog-spool-<uid>`` in it; and if another user holds
        either, a new private directory (``tempfile.mkdtemp``), with an
        error logged, so that records are neither lost nor readable by
        others. Raises OSError if ``create`` and nothing can be created."""
        if self._home is not None:
            if create:
                self._home.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _is_private_dir(self._home):
                return self._home
        d = self.spool_dir
        if create:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _is_private_dir(d):
            self._home = d
            return d
        if _is_shared_tmp(d):
            sub = d / f"joblog-spool-{os.getuid()}"
            if create:
                try:
                    sub.mkdir(mode=0o700)
                except FileExistsError:
                    pass
            if _is_private_dir(sub, ours=True):
                self._home = sub
                return sub
        if not create:
            return None
        home = Path(tempfile.mkdtemp(prefix=f"joblog-spool-{os.getuid()}-"))
        log.error("other users can write to the spool directory %s (or it is theirs); spooling to %s instead "
                  "(records spooled there are replayed by this process only)", self._home or d, home)
        self._home = home
        return home

    def _mark_down(self) -> None:
        self._backoff = min(max(self._backoff * 2, _BACKOFF_MIN), _BACKOFF_MAX)
        self._down_until = time.monotonic() + self._backoff

    def _connection(self) -> _Conn:
        if self._conn is None:
            try:
                if self._socket_found and _planted(self.socket_path):
                    raise JobLogUnavailable(
                        f"{self.socket_path} belongs to another user in a directory anyone may "
                        "write to; not connecting (set JOBLOGD_SOCKET to the daemon's socket)")
                self._conn = _Conn(self.socket_path, self.timeout)
            except OSError as e:
                raise self._unreachable(e) from e
        return self._conn

    def _unreachable(self, e: OSError) -> JobLogUnavailable:
        """The error for a connection that could not be made: which sockets
        were tried, and what to do (as ``joblogctl`` says it)."""
        why = [f"cannot connect to joblogd; tried {self.socket_path}: {e}"]
        if self._socket_found:
            others = [p for p in dict.fromkeys((_own_default_socket(), SYSTEM_SOCKET)) if p != self.socket_path]
            seen = ", ".join(
                f"{p}: " + ("a socket is there now, but this logger chose its socket when it was created"
                            if os.path.exists(p) else "no socket there")
                for p in others)
            why.append("(found by default: the per-user default if a socket is there, else the systemd "
                       "units' socket" + (f"; {seen}" if seen else "") + ").")
        else:
            why.append("(given by socket_path= or JOBLOGD_SOCKET; no other socket is tried).")
        if e.errno in (errno.EACCES, errno.EPERM):
            why.append("This user may not open the socket: add it to the socket's group "
                       "(`usermod -aG joblog $USER`, then log in again), or run as that group.")
        why.append("Start the daemon: `systemctl start joblogd.socket` for the system one "
                   f"({SYSTEM_SOCKET}), or `joblogd` for your own ({_own_default_socket()}); "
                   "or point socket_path= / JOBLOGD_SOCKET at its socket.")
        return JobLogUnavailable(" ".join(why))

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _request(self, obj: Reply | bytes, timeout: float | None = None) -> Reply:
        """One request (a dict, or a line already serialized) and its reply,
        with one transparent reconnect (the daemon may have restarted since
        the last call)."""
        return self._exchange(obj, timeout, False)[0]

    def _exchange(self, obj: Reply | bytes, timeout: float | None, body: bool) -> tuple[Reply, bytes | None]:
        """``_request``; with ``body``, also the bytes that follow a reply
        that is ok (its ``bytes`` of them)."""
        with self._locked():
            attempt = 0
            while True:
                conn = self._connection()
                try:
                    reply = conn.request(obj, timeout or self.timeout)
                    if body and reply.get("ok"):
                        n = reply.get("bytes")
                        if not isinstance(n, int):
                            raise ValueError(f"joblogd's reply gives no length: {reply}")
                        return reply, conn.read_bytes(n)
                    return reply, None
                except (OSError, ConnectionError, ValueError) as e:
                    self._drop()
                    if attempt == 1 or isinstance(e, socket.timeout):
                        raise JobLogUnavailable(f"joblogd at {self.socket_path}: {e}") from e
                    attempt += 1

    def _ping(self) -> Reply:
        reply = self._request({"op": "ping"})
        served = reply.get("log_file")
        if served:
            if self._requested_log_file is not None and Path(served).resolve() != self._requested_log_file.resolve():
                log.warning("asked for log file %s, but joblogd at %s writes %s", self._requested_log_file, self.socket_path, served)
            self.log_file = Path(served)
        return reply

    # -- logging (never raises) --------------------------------------------

    def log_job(self, job: Job) -> None:
        """Log one job (dict or object with ``to_json()``). Pipelined (the
        default): returns once the record is queued for the sender thread
        (``flush()`` waits for the acknowledgements; at interpreter exit,
        and at the end of a multiprocessing child, what is queued is sent
        or spooled, but a process that ends with a bare ``os._exit`` must
        call ``flush()`` first). ``durable=True``: returns once the daemon
        has it on disk, or once it is spooled."""
        self.log_jobs_batch((job,))

    def log_jobs_batch(self, jobs: Iterable[Job]) -> None:
        """Log several jobs in one request (more efficient). A job that
        cannot be serialized is logged as an error and skipped; the others
        are logged."""
        try:
            self._forked()
            parts = _stamp_and_encode(jobs)
            if not parts:
                return
            if self._holder == threading.get_ident():
                # Re-entered on this thread: a signal handler logging while
                # the code it interrupted is in the middle of a request on
                # the connection. The interrupted call logs these when it
                # is done.
                self._deferred.extend(parts)
                return
            with self._locked():
                self._log_parts(parts)
        except Exception:  # never raise into the pipeline
            log.exception("logging failed unexpectedly")

    def _log_parts(self, parts: list[bytes]) -> None:
        if not self.durable:
            # The common case first: the pipe is healthy, nothing is
            # spooled (no spool file this process may have written) and no
            # look for orphaned spools is due.
            pipe = self._pipe
            if pipe is not None and pipe.failed is None and len(parts) == 1 and not _maybe_spooled \
                    and time.monotonic() < self._orphans_due:
                size = len(parts[0]) + 1
                if pipe.room(1, size) and pipe.put(parts, size):
                    return
            self._settle(None)
        try:
            pending = self._spool_pending()
            if pending or time.monotonic() >= self._orphans_due:
                if not self.durable:
                    # The window first (acknowledged, else spooled), so a
                    # replay never sends the spool ahead of older records.
                    self._settle(self.timeout)
                self._replay()
                pending = self._spool_pending()
            if pending:
                # Keep the order: behind what is already waiting.
                self._spool(parts)
                return
        except _BackingOff:
            self._spool(parts)
            return
        except JobLogUnavailable as e:
            log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", e, len(parts), self.spool_file)
            self._spool(parts)
            return
        except Exception:
            log.exception("replaying the spool failed; spooling %d record(s)", len(parts))
            self._spool(parts)
            return
        if not self.durable:
            self._send_pipelined(parts)
            return
        settled, down = self._deliver(parts)
        if down is not None:
            self._mark_down()
            log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", down, len(parts) - settled, self.spool_file)
            self._spool(parts[settled:])

    # -- pipelined logging (the default; see protocol.md) ----------------------

    def _send_pipelined(self, parts: list[bytes]) -> None:
        """Writes the records' log_batch requests on the pipelined
        connection and returns without waiting for their acks. When the
        window is full, waits for acks up to ``timeout``; past that, or if
        the connection fails, what is not acknowledged is settled by
        _settle (sent again, or spooled) and the rest of ``parts`` follows
        it (spooled behind it if it was spooled)."""
        settled_some = False
        for start, end in (_batch_bounds(parts) if len(parts) > 1 else [(0, 1)]):
            chunk = parts[start:end]
            if settled_some and self._spool_pending():
                self._spool(parts[start:])  # keep the order: behind what waits
                return
            pipe = self._pipe
            if pipe is None:
                try:
                    if self._socket_found and _planted(self.socket_path):
                        raise JobLogUnavailable(f"{self.socket_path} belongs to another user in a directory "
                                                "anyone may write to; not connecting")
                    pipe = self._pipe = _Pipe(self.socket_path, self.timeout)
                except OSError as e:
                    self._mark_down()
                    log.warning("joblogd unavailable (%s); spooling %d record(s) to %s",
                                self._unreachable(e), len(parts) - start, self.spool_file)
                    self._spool(parts[start:])
                    return
                except JobLogUnavailable as e:
                    self._mark_down()
                    log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", e, len(parts) - start,
                                self.spool_file)
                    self._spool(parts[start:])
                    return
            size = sum(len(p) + 1 for p in chunk)
            live: _Pipe = pipe
            # Read without the lock first: room only grows, meanwhile.
            full = pipe.failed is None and not pipe.room(len(chunk), size)
            if full:
                with pipe.cond:
                    pipe.cond.wait_for(lambda: live.failed is not None or live.room(len(chunk), size),
                                       self.timeout)
                    full = pipe.failed is None and not pipe.room(len(chunk), size)
            if full:
                pipe.fail(socket.timeout(f"no acknowledgement from joblogd within {self.timeout:g} s"))
            if pipe.failed is None and pipe.put(chunk, size):
                if pipe.failed is not None:
                    self._settle(None)
                    settled_some = True
                continue  # queued: if the pipe failed, settled with the window
            self._settle(None)
            # The window was settled (sent again, or spooled): this chunk
            # goes after it, the same way.
            if self._spool_pending():
                self._spool(parts[start:])
                return
            settled, down = self._deliver(parts[start:])
            if down is not None:
                self._mark_down()
                log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", down,
                            len(parts) - start - settled, self.spool_file)
                self._spool(parts[start + settled:])
            return

    def _settle(self, wait: float | None) -> None:
        """Settles the pipelined window. ``wait`` None: only if the pipe
        failed. Else waits up to ``wait`` for every request in flight to be
        acknowledged, and if that does not happen treats the daemon as
        stalled. Records not acknowledged by a failed pipe are sent again
        at once, synchronously (their record_ids make that safe), when the
        daemon answered (an error reply: refused records are split to the
        one at fault, as in durable mode) or the connection broke (it was
        restarted, say); when it stalled or cannot be reached they are
        spooled, in order, ahead of anything newer."""
        pipe = self._pipe
        if pipe is None:
            return
        if pipe.pid != os.getpid():
            self._pipe = None
            return
        live: _Pipe = pipe
        with pipe.cond:
            if wait is not None and wait > 0:
                pipe.cond.wait_for(lambda: live.failed is not None or live.idle(), wait)
            failed = pipe.failed
            if failed is None:
                if wait is None or pipe.idle():
                    return
                failed = socket.timeout(f"no acknowledgement from joblogd within {wait:g} s")
        self._pipe = None
        parts = pipe.take()
        if not parts:
            return
        if isinstance(failed, (socket.timeout, TimeoutError)):
            self._mark_down()
            log.warning("joblogd stalled (%s); spooling %d record(s) not acknowledged to %s",
                        failed, len(parts), self.spool_file)
            self._spool(parts)
            return
        if not isinstance(failed, _Refused):
            log.info("joblogd connection lost (%s); sending %d record(s) not acknowledged again", failed, len(parts))
        settled, down = self._deliver(parts)
        if down is not None:
            self._mark_down()
            log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", down, len(parts) - settled,
                        self.spool_file)
            self._spool(parts[settled:])

    def _deliver(self, parts: Sequence[bytes], wait: float | None = None) -> tuple[int, JobLogUnavailable | None]:
        """Sends serialized records (``parts``) in acknowledged log_batch
        requests, in order. Returns ``(settled, down)``: how many records,
        from the start, are settled (on disk, or refused for good and logged
        as such), and the JobLogUnavailable that stopped it early, if any.

        A refused batch logs nothing, so a batch refused for what it holds
        (a record too deep or too large, say) is split in halves and sent
        again, down to the record at fault: one bad record never costs the
        others of its batch."""
        pending = list(reversed(_batch_bounds(parts)))
        settled = 0
        while pending:
            start, end = pending.pop()
            line = b'{"op":"log_batch","ack":true,"jobs":[' + b",".join(parts[start:end]) + b"]}"
            try:
                reply = self._request(line, timeout=(wait or self.timeout) + len(line) * _TIMEOUT_PER_BYTE)
            except JobLogUnavailable as e:
                return settled, e
            if not reply.get("ok"):
                err = reply.get("error", {})
                code = err.get("code")
                if code in _TRANSIENT:
                    return settled, JobLogUnavailable(err.get("message", "daemon cannot take records now"))
                if code in _RECORD_FAULTS and end - start > 1:
                    mid = (start + end) // 2
                    pending.append((mid, end))
                    pending.append((start, mid))
                    continue
                # Resending cannot help. Say so loudly; never raise into the
                # pipeline.
                if end - start == 1:
                    log.error("joblogd refused a record (%s): %s", _describe(parts[start]), err)
                else:
                    log.error("joblogd refused %d record(s): %s", end - start, err)
            settled = end
        return settled, None

    # -- spool ----------------------------------------------------------------

    def _spool(self, parts: Sequence[bytes]) -> None:
        """Appends serialized records to this process's spool file. A write
        that fails (a full disk) is cut off again, so no partial line is
        left for the next record to be glued to."""
        if not parts:
            return
        _maybe_spooled.add(f"{self._spool_prefix}{self._pid}")
        data = b"".join(p + b"\n" for p in parts)
        try:
            self._spool_home(create=True)
            while True:
                with _Tracked(self.spool_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND) as fd:
                    if os.fstat(fd).st_uid != os.getuid():
                        # Put there by someone else: never write records
                        # into a file another user owns (and can read).
                        raise OSError(errno.EPERM, "spool file owned by another user")
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if not _still_at(fd, self.spool_file):
                        continue  # replayed and removed while we waited
                    start = os.lseek(fd, 0, os.SEEK_END)
                    try:
                        _write_all(fd, data)
                        os.fsync(fd)
                    except OSError:
                        try:
                            os.ftruncate(fd, start)
                        except OSError:
                            pass
                        raise
                    return
        except OSError:
            log.exception("cannot write the spool file %s; %d record(s) lost", self.spool_file, len(parts))

    def _spool_files(self) -> list[str]:
        """Our spool file, and those this user's processes that are gone
        left for the same daemon. Files of other users are never read: a
        shared directory (``/tmp``) must not let anyone put records in our
        name past the daemon's access checks."""
        out: list[str] = []
        uid = os.getuid()
        home = self._spool_home(create=False)
        if home is None:
            return out
        for path in sorted(glob.glob(str(home / f"{self._spool_prefix}*.ndjson"))):
            try:
                pid = int(Path(path).name[len(self._spool_prefix):-len(".ndjson")])
                st = os.lstat(path)
            except (ValueError, OSError):
                continue
            if st.st_uid != uid or not stat.S_ISREG(st.st_mode):
                continue
            if pid != os.getpid():
                try:
                    os.kill(pid, 0)
                    continue  # alive: its owner replays it
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue
            out.append(path)
        return out

    def _spool_pending(self) -> bool:
        key = f"{self._spool_prefix}{self._pid}"
        if key not in _maybe_spooled:
            return False
        if self._home is not None and self._pid == os.getpid():
            # The spool directory was checked when it was first found: one
            # stat of our file.
            try:
                if os.stat(f"{self._home}/{key}.ndjson").st_size > 0:
                    return True
            except OSError:
                pass
            _maybe_spooled.discard(key)
            return False
        if self._spool_home(create=False) is None:
            return False
        try:
            return self.spool_file.exists() and self.spool_file.stat().st_size > 0
        except OSError:
            return False

    def _replay(self, force: bool = False, wait: float | None = None) -> None:
        """Sends every spool file in the spool directory (ours first), each
        under an exclusive lock so two processes never replay the same one,
        and removes it once the daemon acknowledged all of it. Raises
        JobLogUnavailable if the daemon could not take it all (what was
        not acknowledged stays spooled, in order).

        Only a daemon that answers a ``ping`` at once is sent the spool: a
        daemon that is stalled (a disk stall, SIGSTOP) reads requests that
        timed out later on, so sending the spool again on every call would
        log its records once per call. Within the backoff after a failure
        nothing is tried (``force``, for ``flush`` and queries, tries
        anyway). Each batch's acknowledgement is awaited for ``wait``
        (default: the query timeout if ``force``, else ``timeout``)."""
        if not force and time.monotonic() < self._down_until:
            raise _BackingOff("joblogd was unreachable moments ago")
        self._orphans_due = time.monotonic() + _ORPHAN_CHECK
        files = self._spool_files()
        if not files:
            return
        try:
            probe = self._request({"op": "ping"}, timeout=min(self.timeout, _PROBE_TIMEOUT))
        except JobLogUnavailable:
            self._mark_down()
            raise
        if probe.get("last_error") and not force:
            # Up, but not writing (a full or failing disk): it would hold a
            # resent spool in memory and write it, again, once it can.
            # (`flush` and queries send anyway: they then wait until it can.)
            self._mark_down()
            raise JobLogUnavailable(f"joblogd cannot write its log: {probe['last_error']}")
        mine = str(self.spool_file)
        if mine in files:
            _maybe_spooled.add(f"{self._spool_prefix}{self._pid}")
        files.sort(key=lambda p: p != mine)
        for path in files:
            try:
                spool = _Tracked(path, os.O_RDONLY)
            except OSError:
                continue
            with spool as fd:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EACCES):
                        continue  # another process is replaying it
                    raise
                if not _still_at(fd, path):
                    continue  # replayed (removed or replaced) before we locked it
                chunks = []
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    chunks.append(b)
                # Records end with b"\n" only (a raw U+2028 inside a string
                # is no line end). A last line without one was cut short (a
                # process killed mid-write): it is not a record.
                lines = b"".join(chunks).split(b"\n")
                torn = lines.pop()
                if torn.strip():
                    log.error("dropped the unfinished last line of %s (%d bytes): its process was stopped while writing it",
                              path, len(torn))
                lines = [ln for ln in lines if ln.strip()]
                if lines:
                    # `flush` and queries wait as long as a query may.
                    sent, down = self._deliver(lines, wait=wait or (self.query_timeout if force else self.timeout))
                    if down is not None:
                        # Keep what was not acknowledged, in order: written to
                        # a new file that then replaces the spool, so a process
                        # killed meanwhile leaves the old spool whole.
                        rest = path + ".rest"
                        with _Tracked(rest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as r:
                            _write_all(r, b"".join(ln + b"\n" for ln in lines[sent:]))
                            os.fsync(r)
                        os.replace(rest, path)
                        self._mark_down()
                        raise down
                os.unlink(path)
                if lines:
                    log.info("replayed %d spooled record(s) from %s", len(lines), path)
        self._backoff = 0.0
        self._down_until = 0.0

    # -- queries --------------------------------------------------------------

    def _query(self, obj: Reply) -> Reply:
        self._forked()
        with self._locked():
            # Records logged before the query are in its answer.
            self._settle(self.query_timeout)
            # Ours, and any left by this user's processes that are gone.
            try:
                self._replay(force=True)
            except JobLogUnavailable as e:
                log.warning("spooled records not yet sent (%s); the answer leaves them out", e)
            reply = self._request(obj, timeout=self.query_timeout)
        _raise_for(reply)
        return reply

    def _listed(self, obj: Reply, key: str = "jobs") -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._query(obj)[key]
        return found

    def get_all_jobs(self) -> list[dict[str, Any]]:
        return self._listed({"op": "all"})

    def get_failed_jobs(self) -> list[dict[str, Any]]:
        return self._listed({"op": "failed"})

    def get_successful_jobs(self) -> list[dict[str, Any]]:
        return self._listed({"op": "successful"})

    def get_jobs_by_stage(self, stage: object) -> list[dict[str, Any]]:
        return self._listed({"op": "by_stage", "stage": "null" if stage is None else str(stage)})

    def get_statistics(self) -> dict[str, Any]:
        """The old logger's statistics (same keys, same semantics, error_types
        and stages in first-seen order, a null stage under None), plus
        joblogd's extras (by_subject, by_worker, timings, …), over the
        records in the file. While the daemon cannot write (a full disk),
        over every record it accepted instead, with a warning: the old
        logger's statistics never failed for want of space either."""
        stats: dict[str, Any]
        try:
            stats = self._query({"op": "stats"})["stats"]
        except JobLogRequestError as e:
            if e.code != "write_failed":
                raise
            log.warning("joblogd cannot write its log (%s); statistics include records not yet written", e.message)
            stats = self._query({"op": "stats", "include_pending": True})["stats"]
        # A null or missing stage was the old logger's None key; JSON can
        # only say "null". Order kept (the daemon's: first seen).
        stages = stats.get("stages")
        if isinstance(stages, dict) and "null" in stages:
            stats["stages"] = {None if k == "null" else k: n for k, n in stages.items()}
        return stats

    def retry_candidates(self) -> list[dict[str, Any]]:
        """Videos whose latest attempt failed and may be retried, newest
        first: dicts with video_id, url, error, stage, retry_count,
        next_retry_time."""
        return self._listed({"op": "retry_candidates"}, "candidates")

    def export_csv(self, output_file: StrPath) -> None:
        """Writes the CSV export to ``output_file`` (with this process's
        permissions; the daemon never writes client-named files)."""
        self._forked()
        with self._locked():
            self._settle(self.query_timeout)
            reply, body = self._exchange({"op": "export_csv"}, self.query_timeout, True)
        _raise_for(reply)
        assert body is not None  # an ok reply comes with its bytes
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)
        with open(output_file, "wb") as f:
            f.write(body)
        log.info("exported %d bytes of CSV to %s", len(body), output_file)

    def clear_log(self) -> str:
        """Archives the current log (renamed, never deleted) and starts an
        empty one. Returns the archive's path."""
        archive: str = self._query({"op": "clear", "confirm": True})["archive"]
        return archive

    def flush(self, timeout: float | None = None) -> None:
        """Returns once every record logged so far is on disk, spooled ones
        included. Raises JobLogUnavailable if the daemon cannot be reached
        (the records stay spooled), JobLogRequestError (a RuntimeError) if
        it answers with an error (a failing disk, say), OSError if the
        spool cannot be read. Each request waits up to ``timeout`` (default:
        the query timeout, ``max(timeout, 60 s)`` of the logger)."""
        self._forked()
        wait = self.query_timeout if timeout is None else float(timeout)
        with self._locked():
            # Every pipelined record acknowledged (else spooled, and sent
            # below with the spool), then ours, and any left by processes
            # that are gone.
            self._settle(wait)
            self._replay(force=True, wait=wait)
            reply = self._request({"op": "flush"}, timeout=wait)
        _raise_for(reply)

    def ping(self) -> Reply:
        self._forked()
        return self._ping()

    def close(self) -> None:
        """Closes the connections (a later call opens new ones), once the
        records in flight are acknowledged (waiting ``timeout`` at most;
        then they are spooled)."""
        self._forked()
        with self._locked():
            self._settle(self.timeout)
            self._close_pipe()
            self._drop()

    def _close_pipe(self) -> None:
        """Closes the pipelined connection and its threads. Anything still
        not acknowledged (logged by another thread since the settle) is
        spooled, in order."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None and pipe.pid == os.getpid():
            self._spool(pipe.take())

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._finish()

    def _finish(self) -> None:
        """Leaving a ``with`` block, or a JobLogHandler closing: sends what
        is spooled (every request waiting ``timeout`` at most, not the query
        timeout), then closes the connection. Never raises: what could not
        be sent stays spooled, with a warning, for the next logger or the
        interpreter's exit."""
        try:
            self.flush(timeout=self.timeout)
        except Exception as e:
            if self._spool_pending():
                log.warning("joblogd: spooled records not sent (%s); they stay in %s", e, self.spool_file)
            else:  # everything acknowledged is on disk already
                log.debug("joblogd: no flush on closing (%s)", e)
        finally:
            try:
                self.close()
            except Exception:
                pass

    def __del__(self) -> None:
        # Best effort at interpreter exit; never raise from a destructor.
        # Records still in flight are waited for (``timeout`` at most),
        # else spooled: a logger dropped by a process that then ends with
        # os._exit (a multiprocessing worker) loses nothing. Not on one of
        # the pipe's own threads (a garbage collection there can drop the
        # last reference): it may hold the pipe's lock, and waiting for
        # its own acks would never end; the pipe's threads send what is
        # queued anyway.
        if threading.current_thread().name in _PIPE_THREADS:
            return
        try:
            self._settle(self.timeout)
            self._close_pipe()
        except Exception:
            pass
        try:
            self._drop()
        except Exception:
            pass


def _at_child_exit(lg: JobLogger) -> None:
    """In a multiprocessing child: settle and replay at its exit, as at
    interpreter exit (records queued for the sender would otherwise die
    with it)."""
    multiprocessing.util.Finalize(None, _replay_at_exit, args=(weakref.ref(lg),), exitpriority=10)


def _replay_at_exit(ref: weakref.ReferenceType[JobLogger]) -> None:
    """At interpreter exit: one last try to send what this process spooled,
    so that a worker that ends right after an outage does not leave its
    records waiting for another logger. Never raises."""
    lg = ref()
    if lg is None or lg._pid != os.getpid():
        return
    try:
        with lg._locked():
            lg._settle(lg.timeout)  # acknowledged, else spooled
    except Exception as e:
        log.warning("records in flight not settled at exit (%s)", e)
    try:
        if lg._spool_pending():
            with lg._locked():
                lg._replay(force=True)
    except Exception as e:  # the records stay spooled for the next logger
        log.warning("spooled records left in %s at exit (%s)", lg.spool_file, e)


def create_default_logger(output_dir: StrPath | None = None) -> JobLogger:
    """A logger for ``<output_dir>/processing_log.json`` (default ``notes``)."""
    return JobLogger(Path(output_dir or "notes") / "processing_log.json")


def _has_job(record: logging.LogRecord) -> bool:
    return getattr(record, "job", None) is not None


class JobLogHandler(logging.Handler):
    """A ``logging`` handler that logs the job a log record carries::

        log.info("video done", extra={"job": {"video_id": "abc123", "success": True}})

    sends ``{"video_id": "abc123", "success": True}`` through
    ``JobLogger.log_job`` (a dict, or an object with ``to_json()``, as
    ``log_job`` takes; the record's message and level are not added).
    Records without a ``job`` are ignored, so the handler can sit on the
    root logger beside others. Like ``log_job`` it never raises into the
    application (a failure goes to ``handleError``) and never blocks much
    longer than the client's ``timeout``: while the daemon is away, jobs
    spool.

    ``joblogger``: a JobLogger to send through (kept open when the handler
    closes); else one is made at the first job from ``log_file``,
    ``socket_path``, ``timeout``, ``spool_dir`` and ``durable``
    (JobLogger's arguments), and closed (best effort flush) with the handler. With
    ``logging.config.dictConfig``::

        "handlers": {"jobs": {"class": "joblog_client.JobLogHandler",
                              "socket_path": "/run/joblogd/joblogd.sock"}}
    """

    def __init__(self, joblogger: JobLogger | None = None, *, log_file: StrPath | None = None,
                 socket_path: StrPath | None = None, timeout: float = 2.0,
                 spool_dir: StrPath | None = None, level: int | str = logging.NOTSET,
                 durable: bool = False) -> None:
        super().__init__(level)
        if joblogger is not None and (log_file, socket_path, spool_dir) != (None, None, None):
            raise ValueError("JobLogHandler takes a JobLogger or JobLogger's arguments, not both")
        self._joblogger = joblogger
        self._owned = joblogger is None
        self._log_file = log_file
        self._socket_path = socket_path
        self._timeout = timeout
        self._spool_dir = spool_dir
        self._durable = durable
        # Before the handler's lock is taken: a record with no job never
        # waits for another thread's job to be sent.
        self.addFilter(_has_job)

    @property
    def joblogger(self) -> JobLogger:
        """The JobLogger jobs go through (made now if it was not given)."""
        lg = self._joblogger
        if lg is None:
            self.acquire()  # the handler's lock: re-entrant, renewed in a forked child
            try:
                lg = self._joblogger
                if lg is None:
                    lg = self._joblogger = JobLogger(self._log_file, socket_path=self._socket_path,
                                                     timeout=self._timeout, spool_dir=self._spool_dir,
                                                     durable=self._durable)
            finally:
                self.release()
        return lg

    def emit(self, record: logging.LogRecord) -> None:
        job = getattr(record, "job", None)
        if job is None:
            return
        try:
            self.joblogger.log_job(job)
        except Exception:  # log_job never raises; making the JobLogger might
            self.handleError(record)

    def close(self) -> None:
        """Closes the JobLogger the handler made (sending what is spooled,
        about ``timeout`` at most); one it was given stays open."""
        try:
            lg, owned = self._joblogger, self._owned
            if owned and lg is not None:
                self._joblogger = None
                lg._finish()
        finally:
            super().close()
