"""Drop-in replacement for the pipeline's in-process ``JobLogger``, talking to
the joblogd daemon over its Unix socket. Standard library only.

Switching is a one-line import change::

    # from yt_study_buddy.job_logger import JobLogger, create_default_logger
    from joblog_client import JobLogger, create_default_logger

Same methods, same return shapes: ``log_job``, ``log_jobs_batch``,
``get_all_jobs``, ``get_failed_jobs``, ``get_successful_jobs``,
``get_jobs_by_stage``, ``get_statistics``, ``export_csv``, ``clear_log``, the
``log_file`` attribute; plus ``flush``, ``retry_candidates``, ``ping``.

Logging never raises and never blocks the pipeline longer than ``timeout``:
if the daemon cannot be reached, records go to a local spool file (NDJSON)
and are replayed, in order, as soon as the daemon answers again. Failures
are reported through the ``logging`` module (logger ``joblog_client``).
Queries do need the daemon and raise ``JobLogUnavailable`` without it.

Delivery: a record acknowledged by the daemon is on disk. A record whose
acknowledgement was lost (the daemon was killed after reading it) is spooled
and sent again, so after a daemon *crash* it can appear twice; a graceful
restart (SIGTERM) answers everything it read, so nothing is duplicated.
"""

import errno
import fcntl
import glob
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

__all__ = ["JobLogger", "JobLogUnavailable", "create_default_logger", "default_socket_path"]

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


class JobLogUnavailable(ConnectionError):
    """The daemon could not be reached (queries only; logging spools)."""


def default_socket_path():
    """``$JOBLOGD_SOCKET``, else ``$XDG_RUNTIME_DIR/joblogd.sock``, else
    ``/tmp/joblogd-<uid>.sock``: the daemon's own rule."""
    if os.environ.get("JOBLOGD_SOCKET"):
        return os.environ["JOBLOGD_SOCKET"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "joblogd.sock")
    return f"/tmp/joblogd-{os.getuid()}.sock"


def _as_dict(job):
    """A job may be a dict or any object with ``to_json()`` (returning a
    dict or a JSON string)."""
    if hasattr(job, "to_json") and not isinstance(job, dict):
        job = job.to_json()
        if isinstance(job, (str, bytes)):
            job = json.loads(job)
    return job


def _dumps(obj):
    # ensure_ascii=False as the old logger wrote; default=str so an odd
    # value (a Path, a datetime) never makes logging fail.
    return json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))


def _batch_bounds(parts):
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


def _encode(record):
    """One record as the line bytes sent (and spooled): UTF-8, as the old
    logger wrote. A string with a lone surrogate, which UTF-8 cannot hold,
    is written with \\u escapes instead, which the daemon keeps as they are."""
    try:
        return _dumps(record).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True, default=str, separators=(",", ":")).encode("ascii")


def _describe(part):
    """A refused record, for the error log: its video_id, or its size."""
    try:
        vid = json.loads(part).get("video_id")
    except (ValueError, AttributeError):
        vid = None
    return f"video_id {vid!r}" if vid is not None else f"{len(part)} bytes"


class _Conn:
    """One connection: line out, line (or bytes) in."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")

    def request(self, obj, timeout):
        """``obj`` is a dict, or a request line already serialized (bytes)."""
        self.sock.settimeout(timeout)
        line = obj if isinstance(obj, bytes) else _dumps(obj).encode("utf-8")
        self.sock.sendall(line + b"\n")
        return self.read_reply()

    def read_reply(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("joblogd closed the connection")
        return json.loads(line)

    def read_bytes(self, n):
        data = self.file.read(n)
        if len(data) != n:
            raise ConnectionError("joblogd closed the connection mid-answer")
        return data

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()


class JobLogger:
    """Logs job records to joblogd and answers the old logger's queries.

    ``log_file`` is accepted (first positional argument, as before) for
    compatibility; the daemon decides the file, and a warning is logged if
    it serves another one. ``log_file`` the attribute is the daemon's file.
    """

    def __init__(self, log_file=None, socket_path=None, timeout=2.0, spool_dir=None):
        self.socket_path = str(socket_path or default_socket_path())
        self.timeout = float(timeout)
        self.query_timeout = max(self.timeout, 60.0)
        self._requested_log_file = Path(log_file) if log_file is not None else None
        self.log_file = self._requested_log_file or DEFAULT_LOG_FILE
        spool_root = Path(spool_dir) if spool_dir else Path(self.socket_path).parent
        self.spool_dir = spool_root
        self.spool_file = spool_root / f"joblog-spool-{os.getpid()}.ndjson"
        self._lock = threading.RLock()
        self._conn = None
        self._pid = os.getpid()
        self._last_attempt = 0.0
        # Spools left by processes that died are picked up once.
        self._orphans_checked = False
        try:
            self._ping()
        except JobLogUnavailable as e:
            log.warning("joblogd not reachable at %s (%s); records will be spooled until it is", self.socket_path, e)

    # -- connection -------------------------------------------------------

    def _connection(self):
        if self._conn is not None and self._pid != os.getpid():
            # Forked: the parent's connection is not ours to use.
            self._conn = None
            self._pid = os.getpid()
            self.spool_file = self.spool_dir / f"joblog-spool-{self._pid}.ndjson"
        if self._conn is None:
            try:
                self._conn = _Conn(self.socket_path, self.timeout)
            except OSError as e:
                raise JobLogUnavailable(f"cannot connect to {self.socket_path}: {e}") from e
        return self._conn

    def _drop(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _request(self, obj, timeout=None, body=False):
        """One request with one transparent reconnect (the daemon may have
        restarted since the last call)."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    reply = conn.request(obj, timeout or self.timeout)
                    if body and reply.get("ok"):
                        return reply, conn.read_bytes(reply["bytes"])
                    return (reply, None) if body else reply
                except (OSError, ConnectionError, ValueError) as e:
                    self._drop()
                    if attempt == 1 or isinstance(e, socket.timeout):
                        raise JobLogUnavailable(f"joblogd at {self.socket_path}: {e}") from e

    def _ping(self):
        reply = self._request({"op": "ping"})
        served = reply.get("log_file")
        if served:
            if self._requested_log_file is not None and Path(served).resolve() != self._requested_log_file.resolve():
                log.warning("asked for log file %s, but joblogd at %s writes %s", self._requested_log_file, self.socket_path, served)
            self.log_file = Path(served)
        return reply

    # -- logging (never raises) --------------------------------------------

    def log_job(self, job):
        """Log one job (dict or object with ``to_json()``). Returns once the
        daemon has it on disk, or once it is spooled."""
        self.log_jobs_batch([job])

    def log_jobs_batch(self, jobs):
        """Log several jobs in one request (more efficient)."""
        try:
            records = [_as_dict(j) for j in jobs]
        except Exception:  # a broken to_json() must not stop the pipeline
            log.exception("cannot serialize a job; it was not logged")
            return
        if not records:
            return
        with self._lock:
            try:
                if self._spool_pending() or not self._orphans_checked:
                    self._replay()
                    self._orphans_checked = True
                if self._spool_pending():
                    # Keep the order: behind what is already waiting.
                    self._spool(records)
                    return
            except JobLogUnavailable as e:
                log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", e, len(records), self.spool_file)
                self._spool(records)
                return
            except Exception:
                log.exception("replaying the spool failed; spooling %d record(s)", len(records))
                self._spool(records)
                return
            try:
                self._send(records)
            except Exception:
                # _send spools what it could not deliver; this is a bug path.
                log.exception("logging failed unexpectedly")

    def _send(self, records):
        """Sends in batches; whatever was not acknowledged is spooled."""
        settled, down = self._deliver([_encode(r) for r in records])
        if down is not None:
            log.warning("joblogd unavailable (%s); spooling %d record(s) to %s", down, len(records) - settled, self.spool_file)
            self._spool(records[settled:])

    def _deliver(self, parts):
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
                reply = self._request(line, timeout=self.timeout + len(line) * _TIMEOUT_PER_BYTE)
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

    def _spool(self, records):
        if not records:
            return
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            while True:
                with open(self.spool_file, "a", encoding="utf-8") as f:
                    fcntl.flock(f, fcntl.LOCK_EX)
                    try:
                        same = os.fstat(f.fileno()).st_ino == os.stat(self.spool_file).st_ino
                    except FileNotFoundError:
                        same = False
                    if not same:
                        continue  # replayed and removed while we waited
                    for r in records:
                        f.write(_encode(r).decode("utf-8") + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    return
        except OSError:
            log.exception("cannot write the spool file %s; %d record(s) lost", self.spool_file, len(records))

    def _spool_files(self):
        """Our spool file, and those left by processes that are gone."""
        out = []
        for path in sorted(glob.glob(str(self.spool_dir / "joblog-spool-*.ndjson"))):
            try:
                pid = int(Path(path).name[len("joblog-spool-"):-len(".ndjson")])
            except ValueError:
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

    def _spool_pending(self):
        try:
            return self.spool_file.exists() and self.spool_file.stat().st_size > 0
        except OSError:
            return False

    def _replay(self):
        """Sends every spool file in the spool directory (ours first), each
        under an exclusive lock so two processes never replay the same one,
        and removes it once the daemon acknowledged all of it."""
        now = time.monotonic()
        if now - self._last_attempt < 0.5 and self._spool_pending():
            return  # do not hammer a daemon that is down
        self._last_attempt = now
        files = self._spool_files()
        mine = str(self.spool_file)
        files.sort(key=lambda p: p != mine)
        for path in files:
            try:
                f = open(path, "r+", encoding="utf-8")
            except OSError:
                continue
            with f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EACCES):
                        continue  # another process is replaying it
                    raise
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
                if not lines:
                    continue
                # Spooled lines are records as _dumps wrote them.
                sent, down = self._deliver([ln.encode("utf-8") for ln in lines])
                if down is not None:
                    # Keep what was not acknowledged, in order.
                    f.seek(0)
                    f.truncate()
                    for ln in lines[sent:]:
                        f.write(ln + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    return
                os.unlink(path)
                log.info("replayed %d spooled record(s) from %s", len(lines), path)

    # -- queries --------------------------------------------------------------

    def _query(self, obj):
        with self._lock:
            if self._spool_pending():
                try:
                    self._replay()
                except JobLogUnavailable:
                    pass
            reply = self._request(obj, timeout=self.query_timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"joblogd: {reply.get('error')}")
        return reply

    def get_all_jobs(self):
        return self._query({"op": "all"})["jobs"]

    def get_failed_jobs(self):
        return self._query({"op": "failed"})["jobs"]

    def get_successful_jobs(self):
        return self._query({"op": "successful"})["jobs"]

    def get_jobs_by_stage(self, stage):
        return self._query({"op": "by_stage", "stage": "null" if stage is None else str(stage)})["jobs"]

    def get_statistics(self):
        """The old logger's statistics (same keys, same semantics), plus
        joblogd's extras (by_subject, by_worker, timings, …)."""
        return self._query({"op": "stats"})["stats"]

    def retry_candidates(self):
        """Videos whose latest attempt failed and may be retried, newest
        first: dicts with video_id, url, error, stage, retry_count,
        next_retry_time."""
        return self._query({"op": "retry_candidates"})["candidates"]

    def export_csv(self, output_file):
        """Writes the CSV export to ``output_file`` (with this process's
        permissions; the daemon never writes client-named files)."""
        with self._lock:
            reply, body = self._request({"op": "export_csv"}, timeout=self.query_timeout, body=True)
        if not reply.get("ok"):
            raise RuntimeError(f"joblogd: {reply.get('error')}")
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)
        with open(output_file, "wb") as f:
            f.write(body)
        log.info("exported %d bytes of CSV to %s", len(body), output_file)

    def clear_log(self):
        """Archives the current log (renamed, never deleted) and starts an
        empty one. Returns the archive's path."""
        return self._query({"op": "clear", "confirm": True})["archive"]

    def flush(self):
        """Returns once every record logged so far is on disk."""
        self._query({"op": "flush"})

    def ping(self):
        return self._ping()

    def close(self):
        with self._lock:
            self._drop()

    def __del__(self):
        # Best effort at interpreter exit; never raise from a destructor.
        try:
            self._drop()
        except Exception:
            pass


def create_default_logger(output_dir=None):
    """A logger for ``<output_dir>/processing_log.json`` (default ``notes``)."""
    return JobLogger(Path(output_dir or "notes") / "processing_log.json")
