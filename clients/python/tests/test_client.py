"""Tests of joblog_client against the real joblogd binary.

Run: JOBLOGD_BIN=target/debug/joblogd python3 -m unittest discover -s clients/python/tests
(`cargo test` runs them through tests/python.rs with the binary it built).
"""

import datetime
import faulthandler
import fcntl
import json
import logging
import logging.config
import multiprocessing
import os
import pickle
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
sys.path.insert(0, str(HERE.parent))

import joblog_client  # noqa: E402
from joblog_client import JobLogger, create_default_logger  # noqa: E402
from joblog_client import (JobLogError, JobLogForbidden, JobLogHandler,  # noqa: E402
                           JobLogRequestError, JobLogUnavailable)

REFERENCE = runpy.run_path(str(ROOT / "tests" / "fixtures" / "reference.py"))
BIN = os.environ.get("JOBLOGD_BIN", str(ROOT / "target" / "debug" / "joblogd"))


class Daemon:
    def __init__(self, directory, log_file=None, socket_path=None):
        self.dir = Path(directory)
        self.socket = str(socket_path or self.dir / "s.sock")
        self.log = Path(log_file or self.dir / "log.json")
        self.proc = None
        self.extra = []

    def start(self):
        self.stderr = open(self.dir / "daemon.err", "ab")
        for attempt in range(100):
            try:
                self.proc = subprocess.Popen(
                    [BIN, "--socket", self.socket, "--log-file", str(self.log), *self.extra],
                    stderr=self.stderr, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
                break
            except FileNotFoundError:
                # The Rust suite's install test has cargo link the binary
                # again (remove, then link): gone for an instant.
                if attempt == 99:
                    raise
                time.sleep(0.02)
        deadline = time.time() + 20
        while time.time() < deadline:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.socket)
                return self
            except OSError:
                time.sleep(0.01)
            finally:
                s.close()
            if self.proc.poll() is not None:
                raise RuntimeError("joblogd exited: " + (self.dir / "daemon.err").read_text())
        raise RuntimeError("joblogd not ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        if self.proc:
            self.stderr.close()
        return self.proc.returncode if self.proc else None

    def records(self):
        with open(self.log, encoding="utf-8") as f:
            return json.load(f)


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="jlpy-", dir="/tmp")
        self.daemon = Daemon(self.tmp).start()

    def tearDown(self):
        self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logger(self, **kw):
        kw.setdefault("socket_path", self.daemon.socket)
        kw.setdefault("spool_dir", self.tmp)
        return JobLogger(**kw)


class ApiParity(Base):
    """The old logger's API, answered from the daemon, equals the reference
    semantics computed from the file (the same fixture as tests/query.rs)."""

    def test_api_matches_reference(self):
        gen = Path(self.tmp) / "gen.ndjson"
        REFERENCE["generate"](str(gen), 5000)
        jobs = [json.loads(line) for line in gen.read_text(encoding="utf-8").splitlines()]
        lg = self.logger()
        lg.log_jobs_batch(jobs[:2500])
        for j in jobs[2500:2600]:
            lg.log_job(j)
        lg.log_jobs_batch(jobs[2600:])
        lg.flush()
        on_disk = self.daemon.records()
        self.assertEqual(len(on_disk), 5000)
        self.assertEqual(lg.get_all_jobs(), on_disk)
        self.assertEqual(lg.get_failed_jobs(), [j for j in on_disk if not j.get("success")])
        self.assertEqual(lg.get_successful_jobs(), [j for j in on_disk if j.get("success")])
        self.assertEqual(lg.get_jobs_by_stage("generating_notes"), [j for j in on_disk if j.get("stage") == "generating_notes"])
        want = REFERENCE["python_statistics"](on_disk)
        got = lg.get_statistics()
        for key in ["total_jobs", "successful", "failed", "total_files_created", "error_types", "stages", "by_subject", "by_worker", "retry_candidates", "first_logged_at", "last_logged_at"]:
            self.assertEqual(got[key], want[key], key)
        for key in ["error_types", "stages"]:
            self.assertEqual(list(got[key].items()), list(want[key].items()), f"{key} in first-seen order")
        self.assertAlmostEqual(got["success_rate"], want["success_rate"], places=12)
        self.assertAlmostEqual(got["average_duration"], want["average_duration"], places=9)
        out = Path(self.tmp) / "out" / "jobs_export.csv"
        lg.export_csv(out)
        with open(out, newline="", encoding="utf-8") as f:
            self.assertEqual(f.read(), REFERENCE["export_csv"](on_disk))
        self.assertEqual(len(lg.retry_candidates()), want["retry_candidates"])
        self.assertEqual(lg.log_file, Path(self.daemon.log))

    def test_to_json_objects_and_processing_report(self):
        class Job:
            def __init__(self, i):
                self.i = i

            def to_json(self):
                return {"video_id": f"v{self.i}", "success": self.i % 2 == 0, "processing_duration": 10.0,
                        "total_files": 4, "error": None if self.i % 2 == 0 else "Network timeout: x"}

        lg = self.logger()
        for i in range(4):
            lg.log_job(Job(i))
        stats = lg.get_statistics()
        self.assertEqual((stats["total_jobs"], stats["successful"], stats["failed"]), (4, 2, 2))
        self.assertEqual(stats["error_types"], {"Network timeout": 2})
        # The guide's report template works unchanged.
        report = f"Success rate: {stats['success_rate']*100:.1f}% avg {stats['average_duration']:.1f}s"
        self.assertEqual(report, "Success rate: 50.0% avg 10.0s")

    def test_statistics_and_csv_are_the_old_loggers(self):
        """The issue's records: errors and stages first seen out of sorted
        order, a null stage (None to Python), total_files True (1 to
        Python's sum: 10.5, not 9.5), nested values in CSV columns (str()
        of them, as Python's csv module writes them)."""
        jobs = [
            {"video_id": "a", "success": False, "error": "Zeta: late", "stage": "upload"},
            {"video_id": "b", "success": True, "stage": None, "total_files": 4.5, "processing_duration": True},
            {"video_id": "c", "success": True, "total_files": True, "processing_duration": 2},
            {"video_id": "d", "success": False, "error": "Alpha: first", "stage": "fetch"},
            {"video_id": "e", "success": True, "stage": "upload", "total_files": 5},
            {"video_id": "f", "success": False, "error": {"nested": [1, 2.5, True, None]}, "stage": "fetch",
             "video_title": ["it's", 'say "hi"', "caf\u00e9\u200b"], "has_notes": {"n": 1e16, "m": 1e-05}},
        ]
        lg = self.logger()
        lg.log_jobs_batch(jobs)
        got = lg.get_statistics()
        on_disk = self.daemon.records()
        want = REFERENCE["python_statistics"](on_disk)
        self.assertEqual(got["total_files_created"], 10.5)
        self.assertEqual(got["average_duration"], 1.5)
        for key in ["total_jobs", "successful", "failed", "total_files_created", "average_duration", "error_types", "stages"]:
            self.assertEqual(got[key], want[key], key)
        self.assertEqual(list(got["error_types"]), ["Zeta", "Alpha", '{"nested":[1,2.5,true,null]}'])
        self.assertEqual(list(got["stages"].items()), [("upload", 2), (None, 2), ("fetch", 2)])
        out = Path(self.tmp) / "jobs_export.csv"
        lg.export_csv(out)
        with open(out, newline="", encoding="utf-8") as f:
            got_csv = f.read()
        self.assertEqual(got_csv, REFERENCE["export_csv"](on_disk))
        self.assertIn("\"{'nested': [1, 2.5, True, None]}\"", got_csv)
        self.assertIn("\"[\"\"it's\"\", 'say \"\"hi\"\"', 'caf\u00e9\\u200b']\"", got_csv)
        self.assertIn("\"{'n': 1e+16, 'm': 1e-05}\"", got_csv)

    def test_clear_log_archives(self):
        lg = self.logger()
        lg.log_job({"video_id": "a"})
        archive = lg.clear_log()
        self.assertTrue(Path(archive).exists())
        self.assertEqual(lg.get_all_jobs(), [])

    def test_warns_when_the_daemon_serves_another_file(self):
        with self.assertLogs("joblog_client", level="WARNING") as cm:
            lg = self.logger(log_file=Path(self.tmp) / "elsewhere.json")
        self.assertTrue(any("writes" in m for m in cm.output))
        self.assertEqual(lg.log_file, Path(self.daemon.log))

    def test_create_default_logger_and_socket_resolution(self):
        os.environ["JOBLOGD_SOCKET"] = self.daemon.socket
        try:
            self.assertEqual(joblog_client.default_socket_path(), self.daemon.socket)
            lg = create_default_logger(Path(self.tmp) / "notes")
            lg.log_job({"video_id": "d"})
            self.assertEqual(lg.get_all_jobs()[0]["video_id"], "d")
        finally:
            del os.environ["JOBLOGD_SOCKET"]


def _worker(socket_path, spool_dir, proc, threads, per):
    lg = JobLogger(socket_path=socket_path, spool_dir=spool_dir)

    def run(t):
        for i in range(per):
            lg.log_job({"p": proc, "t": t, "i": i})

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


class Demo(Base):
    def test_pipeline_demo_prints_the_processing_report(self):
        env = dict(os.environ, JOBLOGD_SOCKET=self.daemon.socket, PYTHONPATH=str(HERE.parent))
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "pipeline_demo.py")],
                             env=env, capture_output=True, text=True, timeout=120, cwd=self.tmp)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Processing Report", out.stdout)
        self.assertIn("Total Jobs: 30", out.stdout)
        self.assertEqual(len(self.daemon.records()), 30)


class Concurrency(Base):
    def test_eight_threads_times_four_processes(self):
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(self.daemon.socket, self.tmp, p, 8, 100)) for p in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            self.assertEqual(p.exitcode, 0)
        recs = self.daemon.records()
        keys = [(r["p"], r["t"], r["i"]) for r in recs]
        self.assertEqual(len(keys), 4 * 8 * 100)
        self.assertEqual(len(set(keys)), len(keys), "no duplicates")
        # Per thread, in order.
        for p in range(4):
            for t in range(8):
                self.assertEqual([k[2] for k in keys if k[:2] == (p, t)], list(range(100)))


class Batching(Base):
    def test_one_refused_record_costs_nothing_else_of_its_batch(self):
        jobs = [{"video_id": f"v{i}", "i": i} for i in range(10)]
        deep = {"video_id": "deep"}
        node = deep
        for _ in range(200):  # past the daemon's 128 levels: too_deep
            node["a"] = {}
            node = node["a"]
        jobs.insert(4, deep)
        lg = self.logger()
        with self.assertLogs("joblog_client", level="ERROR") as logs:
            lg.log_jobs_batch(jobs)
            lg.flush()  # pipelined: the refusal comes with the acks
        self.assertEqual(len(logs.records), 1, logs.output)
        self.assertIn("video_id 'deep'", logs.output[0])
        self.assertIn("too_deep", logs.output[0])
        self.assertEqual([r["i"] for r in self.daemon.records()], list(range(10)))

    def test_big_records_are_batched_under_the_line_limit(self):
        # 8 records of 3 MB: one request for all would be a 24 MB line,
        # past the daemon's 16 MiB limit, and every record refused with it.
        jobs = [{"video_id": f"big{i}", "transcript": str(i) * 3_000_000} for i in range(8)]
        lg = self.logger(timeout=30)
        lg.log_jobs_batch(jobs)
        lg.flush()
        got = self.daemon.records()
        self.assertEqual([r["video_id"] for r in got], [f"big{i}" for i in range(8)])
        self.assertTrue(all(len(r["transcript"]) == 3_000_000 for r in got))

    def test_a_lone_surrogate_costs_nothing_else(self):
        jobs = [{"video_id": "a"}, {"video_id": "b", "title": "x\ud800y"}, {"video_id": "c"}]
        lg = self.logger()
        lg.log_jobs_batch(jobs)
        lg.flush()
        got = self.daemon.records()
        self.assertEqual([r["video_id"] for r in got], ["a", "b", "c"])
        self.assertEqual(got[1]["title"], "x\ud800y")

    def test_only_record_faults_are_split(self):
        lg = self.logger()
        calls = []

        def refuse(code):
            def request(line, timeout=None, body=False):
                calls.append(line)
                return {"ok": False, "error": {"code": code, "message": "no"}}
            return request

        parts = [b'{"a":1}'] * 8
        lg._request = refuse("invalid_request")
        with self.assertLogs("joblog_client", level="ERROR") as logs:
            self.assertEqual(lg._deliver(parts), (8, None))
        self.assertEqual((len(calls), len(logs.records)), (1, 1))
        calls.clear()
        lg._request = refuse("forbidden")
        settled, down = lg._deliver(parts)
        self.assertEqual((settled, len(calls)), (0, 1))
        self.assertIsInstance(down, joblog_client.JobLogUnavailable)
        calls.clear()
        lg._request = refuse("too_deep")
        with self.assertLogs("joblog_client", level="ERROR") as logs:
            self.assertEqual(lg._deliver(parts), (8, None))
        self.assertEqual((len(calls), len(logs.records)), (15, 8))

    def test_an_unserializable_job_costs_nothing_else(self):
        circular = {"video_id": "loop"}
        circular["self"] = circular
        jobs = [{"i": 0}, {(1, 2): "tuple key"}, {"i": 1}, circular, {"i": 2}]
        lg = self.logger()
        with self.assertLogs("joblog_client", level="ERROR") as logs:
            lg.log_jobs_batch(jobs)  # never raises
        lg.flush()
        self.assertEqual(len(logs.records), 2, logs.output)
        self.assertIn("video_id 'loop'", logs.output[1])
        self.assertEqual([r["i"] for r in self.daemon.records()], [0, 1, 2])

    def test_logged_at_is_the_time_of_the_call_one_per_batch(self):
        lg = self.logger()
        before = datetime.datetime.now()
        lg.log_jobs_batch([{"i": i} for i in range(3)] + [{"i": 3, "logged_at": "kept"}])
        after = datetime.datetime.now()
        lg.flush()
        got = self.daemon.records()
        stamps = {r["logged_at"] for r in got[:3]}
        self.assertEqual(len(stamps), 1, stamps)
        stamp = datetime.datetime.fromisoformat(stamps.pop())
        self.assertTrue(before <= stamp <= after, (before, stamp, after))
        self.assertEqual(got[3]["logged_at"], "kept")
        self.assertEqual(list(got[0]), ["i", "record_id", "logged_at"], "added last")
        ids = [r["record_id"] for r in got]
        self.assertEqual(len(set(ids)), 4, ids)
        for rid in ids:
            u = uuid.UUID(rid)
            self.assertEqual((u.version, u.variant), (7, uuid.RFC_4122), rid)

    def test_a_record_id_given_is_kept(self):
        lg = self.logger()
        lg.log_job({"i": 0, "record_id": "mine-1"})
        lg.log_job({"i": 1, "record_id": "mine-1"})
        lg.flush()
        got = self.daemon.records()
        self.assertEqual([(r["i"], r["record_id"]) for r in got], [(0, "mine-1")])

    def test_a_signal_handler_that_logs_mid_request_is_safe(self):
        # The handler runs on the thread it interrupts, which may be in the
        # middle of a request on the connection.
        lg = self.logger()
        fired = []
        # A regression here deadlocks: fail in bounded time instead.
        faulthandler.dump_traceback_later(120, exit=True)
        self.addCleanup(faulthandler.cancel_dump_traceback_later)

        def handler(sig, frame):
            fired.append(len(fired))
            lg.log_job({"h": fired[-1]})

        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        n = 0
        try:
            # Until the handler has fired often enough, however fast
            # log_job is (at least 1,500 calls).
            while n < 1500 or (len(fired) <= 10 and n < 500_000):
                lg.log_job({"m": n})
                n += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        lg.flush()
        got = lg.get_all_jobs()  # replies still match their requests
        self.assertGreater(len(fired), 10)
        self.assertEqual([r["m"] for r in got if "m" in r], list(range(n)))
        self.assertEqual(sorted(r["h"] for r in got if "h" in r), fired)

    def test_batch_bounds(self):
        parts = [b"x" * n for n in (10, 3 << 20, 2 << 20, 5 << 20, 1, 1)]
        self.assertEqual(joblog_client._batch_bounds(parts), [(0, 2), (2, 3), (3, 4), (4, 6)])
        self.assertEqual(joblog_client._batch_bounds([b"{}"] * 2500), [(0, 1000), (1000, 2000), (2000, 2500)])
        self.assertEqual(joblog_client._batch_bounds([]), [])


class Resilience(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="jlpy-", dir="/tmp")
        self.daemon = Daemon(self.tmp)

    def tearDown(self):
        self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_spool_while_down_then_replay_in_order(self):
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5)
            t0 = time.monotonic()
            for i in range(50):
                lg.log_job({"i": i})  # never raises
            self.assertLess(time.monotonic() - t0, 5)
        spool = lg.spool_file
        self.assertEqual(len(spool.read_text().splitlines()), 50)
        self.daemon.start()
        time.sleep(0.6)  # past the retry throttle
        lg.log_job({"i": 50})
        lg.flush()
        self.assertEqual([r["i"] for r in self.daemon.records()], list(range(51)))
        self.assertFalse(spool.exists(), "spool removed after replay")

    def test_a_spooled_record_keeps_the_time_it_was_logged(self):
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5)
            logged = datetime.datetime.now()
            lg.log_job({"i": 0})
        time.sleep(1.5)
        self.daemon.start()
        lg.flush()
        stamp = datetime.datetime.fromisoformat(self.daemon.records()[0]["logged_at"])
        self.assertLess(abs((stamp - logged).total_seconds()), 0.5, (stamp, logged))

    def test_flush_sends_the_spool_or_raises(self):
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5)
            lg.log_job({"i": 0})
        with self.assertRaises(joblog_client.JobLogUnavailable):
            lg.flush()
        # Back within the backoff: flush does not wait for a later call.
        self.daemon.start()
        lg.flush()
        self.assertEqual([r["i"] for r in self.daemon.records()], [0])
        self.assertEqual(lg.get_statistics()["total_jobs"], 1)

    def test_a_stalled_daemon_is_not_sent_the_spool_again_and_again(self):
        # A stalled daemon (a disk stall; SIGSTOP here) later reads every
        # request that timed out. Resending the whole spool on each call
        # logged each record once per call after it.
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.3)
        self.daemon.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with self.assertLogs("joblog_client", level="WARNING"):
                for i in range(20):
                    lg.log_job({"i": i})
                    time.sleep(0.1)
            took = time.monotonic() - t0
        finally:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.assertLess(took, 2 + 20 * 0.1 + 2, "calls never wait long")
        lg.flush()
        got = [r["i"] for r in self.daemon.records()]
        # The requests that timed out were read and written later; their
        # records, spooled and sent again, were answered as duplicates.
        self.assertEqual(sorted(got), list(range(20)), "each once")

    def test_a_forked_child_spools_to_its_own_file(self):
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5)
        pid = os.fork()
        if pid == 0:  # the child: log while the daemon is down, then exit
            try:
                lg.log_jobs_batch([{"child": 0}, {"child": 1}])
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        spool = Path(self.tmp) / f"{lg._spool_prefix}{pid}.ndjson"
        self.assertEqual(len(spool.read_text().splitlines()), 2)
        self.assertFalse(lg.spool_file.exists())
        # The child is gone: the parent's flush sends its spool.
        self.daemon.start()
        lg.flush()
        self.assertEqual([r["child"] for r in self.daemon.records()], [0, 1])
        self.assertFalse(spool.exists())

    def test_line_separators_inside_strings_survive_the_spool(self):
        # ensure_ascii=False leaves U+2028, U+2029 and U+0085 raw, and
        # str.splitlines() cuts at them.
        jobs = [{"t": "a\u2028b"}, {"t": "c\u2029d"}, {"t": "e\x85f"}, {"t": "g\rh"}]
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5)
            lg.log_jobs_batch(jobs)
        self.daemon.start()
        lg.flush()
        self.assertEqual([r["t"] for r in self.daemon.records()], [j["t"] for j in jobs])

    def test_a_spool_replayed_by_another_is_not_sent_again(self):
        # Another logger replays (and removes) the orphan between our open
        # and our lock: what we then lock is the old file, already sent.
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.0)
        orphan = Path(self.tmp) / f"{lg._spool_prefix}999999999.ndjson"
        orphan.write_text('{"i":0}\n{"i":1}\n')
        real = joblog_client.fcntl.flock

        def flock(f, op):
            if op & fcntl.LOCK_NB and orphan.exists():
                orphan.unlink()  # the other replayer finished first
            return real(f, op)

        joblog_client.fcntl.flock = flock
        try:
            lg.flush()  # neither resends nor fails on the vanished file
        finally:
            joblog_client.fcntl.flock = real
        self.assertEqual(self.daemon.records(), [])

    def test_a_child_forked_mid_spool_does_not_hold_the_parent_up(self):
        # The spool's flock belongs to the open file: a child forked while a
        # thread of the parent holds it would keep it held while it lives.
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.3)
        real_fsync = os.fsync
        inside = threading.Event()

        def slow_fsync(fd):
            inside.set()
            time.sleep(0.5)
            real_fsync(fd)

        os.fsync = slow_fsync
        try:
            t = threading.Thread(target=lg.log_job, args=({"i": 0},))
            t.start()
            self.assertTrue(inside.wait(10))
            pid = os.fork()
            if pid == 0:
                time.sleep(4)
                os._exit(0)
            t.join()
        finally:
            os.fsync = real_fsync
        try:
            t0 = time.monotonic()
            lg.log_job({"i": 1})
            took = time.monotonic() - t0
        finally:
            os.waitpid(pid, 0)
        self.assertLess(took, 2, "the parent waited for its child")
        self.assertEqual(len(lg.spool_file.read_text().splitlines()), 2)

    def test_a_spool_cut_mid_character_still_replays(self):
        # A process killed while writing (or a full disk) leaves a last line
        # cut short, possibly inside a multi-byte character.
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.0)
        orphan = Path(self.tmp) / f"{lg._spool_prefix}999999999.ndjson"
        orphan.write_bytes('{"t":"一"}\n{"t":"二"}\n{"t":"三'.encode("utf-8")[:-1])
        with self.assertLogs("joblog_client", level="ERROR") as logs:
            lg.flush()
        self.assertIn("unfinished last line", logs.output[0])
        self.assertEqual([r["t"] for r in self.daemon.records()], ["一", "二"])
        self.assertFalse(orphan.exists())

    def test_only_this_users_spools_for_this_daemon_are_replayed(self):
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.0)
        # Another daemon's spool in the same directory (its socket is
        # elsewhere), and one of ours planted by another user.
        other = JobLogger(socket_path=os.path.join(self.tmp, "other.sock"), spool_dir=self.tmp, timeout=0.2)
        foreign = Path(self.tmp) / f"{other._spool_prefix}999999998.ndjson"
        foreign.write_text('{"for":"the other daemon"}\n')
        planted = Path(self.tmp) / f"{lg._spool_prefix}999999997.ndjson"
        planted.write_text('{"planted":true}\n')
        if os.getuid() == 0:
            os.chown(planted, 65534, 65534)
        else:
            print("SKIPPED (part): not root, cannot give a spool file to another user", file=sys.stderr)
            planted.unlink()
        ours = Path(self.tmp) / f"{lg._spool_prefix}999999996.ndjson"
        ours.write_text('{"ours":true}\n')
        got = [{k: v for k, v in j.items() if k != "logged_at"} for j in lg.get_all_jobs()]
        self.assertEqual(got, [{"ours": True}], "queries replay orphans first")
        self.assertTrue(foreign.exists())
        self.assertEqual(foreign.stat().st_size > 0, True)

    def test_a_daemon_that_cannot_write_is_not_sent_the_spool_again(self):
        # A full disk: the daemon keeps answering ping but holds every batch
        # in memory and writes it once it can. Resending the spool after each
        # backoff wrote records three and four times.
        fault = Path(self.tmp) / "fault"
        fault.write_text("enospc")
        self.daemon.extra = ["--fault-file", str(fault)]
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.3)
        with self.assertLogs("joblog_client", level="WARNING"):
            for i in range(15):
                lg.log_job({"i": i})
                time.sleep(0.2)
        fault.unlink()
        lg.flush()
        got = [r["i"] for r in self.daemon.records()]
        self.assertEqual(sorted(set(got)), list(range(15)), "none lost")
        counts = {i: got.count(i) for i in set(got)}
        self.assertLessEqual(max(counts.values()), 2, counts)

    def test_statistics_count_accepted_records_while_the_daemon_cannot_write(self):
        # Durable-only stats answer write_failed while writes fail; the old
        # logger's statistics never failed for want of space, so the client
        # counts the accepted records instead, and says so.
        fault = Path(self.tmp) / "fault"
        fault.write_text("enospc")
        self.daemon.extra = ["--fault-file", str(fault)]
        self.daemon.start()
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.daemon.socket)
        s.sendall(b'{"video_id":"a","success":true}\n{"video_id":"b","success":false}\n')
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5)
        with self.assertLogs("joblog_client", level="WARNING") as logs:
            stats = lg.get_statistics()
        self.assertEqual((stats["total_jobs"], stats["failed"]), (2, 1))
        self.assertIn("not yet written", "\n".join(logs.output))
        fault.unlink()
        self.assertEqual(lg.get_statistics()["total_jobs"], 2)
        self.assertEqual(len(self.daemon.records()), 2)
        s.close()

    def test_a_default_socket_another_user_planted_is_never_connected_to(self):
        # A socket found by default in a directory anyone may write to
        # (/tmp) that belongs to another user: records spool, nothing is sent.
        if os.geteuid() != 0:
            self.skipTest("giving a socket to another user needs root")
        shared = Path(self.tmp) / "shared"
        shared.mkdir()
        shared.chmod(0o1777)
        planted = shared / "joblogd.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(planted))
        listener.listen(8)
        listener.setblocking(False)
        os.lchown(planted, 65534, 65534)
        saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "JOBLOGD_SOCKET")}
        os.environ["XDG_RUNTIME_DIR"] = str(shared)
        os.environ.pop("JOBLOGD_SOCKET", None)
        try:
            with self.assertLogs("joblog_client", level="WARNING"):
                lg = JobLogger(spool_dir=self.tmp, timeout=0.3)
                lg.log_job({"secret": 1})
            with self.assertRaises(BlockingIOError):
                listener.accept()
            self.assertTrue(list(Path(self.tmp).glob("joblog-spool-*.ndjson")), "spooled")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            listener.close()

    def test_records_spooled_at_exit_are_sent_if_the_daemon_is_back(self):
        flag = Path(self.tmp) / "go"
        script = (
            "import sys, time, pathlib; sys.path.insert(0, %r)\n"
            "from joblog_client import JobLogger\n"
            "lg = JobLogger(socket_path=%r, spool_dir=%r, timeout=0.3)\n"
            "lg.log_job({'at': 'exit'})\n"
            "while not pathlib.Path(%r).exists(): time.sleep(0.05)\n"
        ) % (str(HERE.parent), self.daemon.socket, self.tmp, str(flag))
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not list(Path(self.tmp).glob("joblog-spool-*.ndjson")) and time.time() < deadline:
            time.sleep(0.05)
        self.daemon.start()
        flag.touch()
        self.assertEqual(proc.wait(30), 0)
        self.assertEqual(self.daemon.records()[0]["at"], "exit")

    def test_a_shared_spool_directory_gets_a_private_subdirectory(self):
        # A directory like /tmp (the default beside a socket in /tmp): any
        # user could create a file under the name a process will spool to
        # before it does, and read the records that then go into it.
        shared = Path(self.tmp) / "shared"
        shared.mkdir()
        os.chmod(shared, 0o1777)
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=shared, timeout=0.3)
            lg.log_job({"n": 1})
        sub = shared / f"joblog-spool-{os.getuid()}"
        self.assertEqual(lg.spool_file.parent, sub)
        self.assertEqual(sub.stat().st_mode & 0o777, 0o700)
        self.assertEqual(len(lg.spool_file.read_text().splitlines()), 1)
        self.assertEqual([p.name for p in shared.iterdir()], [sub.name])
        self.daemon.start()
        lg.flush()
        self.assertEqual([r["n"] for r in self.daemon.records()], [1])

    def test_a_spool_directory_another_user_holds_is_not_used(self):
        if os.getuid() != 0:
            print("SKIPPED: not root, cannot give a directory to another user", file=sys.stderr)
            return
        taken = Path(self.tmp) / "taken"
        taken.mkdir()
        os.chmod(taken, 0o777)
        os.chown(taken, 65534, 65534)
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=taken, timeout=0.3)
        # The other user puts a file, readable by them, where this process
        # would spool, and the shared-directory name too.
        planted = taken / lg.spool_file.name
        planted.write_text("")
        os.chmod(planted, 0o666)
        os.chown(planted, 65534, 65534)
        (taken / f"joblog-spool-{os.getuid()}").mkdir()
        with self.assertLogs("joblog_client", level="ERROR") as cm:
            lg.log_job({"n": 1})
        self.assertTrue(any("other users can write to the spool directory" in m for m in cm.output), cm.output)
        home = lg.spool_file.parent
        self.addCleanup(shutil.rmtree, home, True)
        self.assertNotEqual(home, taken)
        self.assertEqual(planted.read_text(), "", "nothing written where the other user can read it")
        self.assertEqual(home.stat().st_mode & 0o777, 0o700)
        self.daemon.start()
        lg.flush()
        self.assertEqual([r["n"] for r in self.daemon.records()], [1])

    def test_a_group_writable_spool_directory_is_not_used(self):
        # Another member of the group could create the spool file first.
        shared = Path(self.tmp) / "group"
        shared.mkdir()
        os.chmod(shared, 0o770)
        with self.assertLogs("joblog_client", level="WARNING"):
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=shared, timeout=0.3)
        with self.assertLogs("joblog_client", level="ERROR") as cm:
            lg.log_job({"n": 1})
        self.assertTrue(any("other users can write" in m for m in cm.output), cm.output)
        home = lg.spool_file.parent
        self.addCleanup(shutil.rmtree, home, True)
        self.assertNotEqual(home, shared)
        self.assertEqual(list(shared.iterdir()), [])
        self.daemon.start()
        lg.flush()
        self.assertEqual([r["n"] for r in self.daemon.records()], [1])

    def test_a_spool_directory_reached_through_our_own_link_is_used(self):
        real = Path(self.tmp) / "real"
        real.mkdir(mode=0o700)
        link = Path(self.tmp) / "link"
        link.symlink_to(real)
        with self.assertLogs("joblog_client", level="WARNING") as cm:
            lg = JobLogger(socket_path=self.daemon.socket, spool_dir=link, timeout=0.3)
            lg.log_job({"n": 1})
        self.assertFalse(any("other users can write" in m for m in cm.output), cm.output)
        self.assertEqual(lg.spool_file.parent, link)
        self.assertEqual(len(list(real.iterdir())), 1)

    def test_the_spool_goes_where_this_user_may_write(self):
        sock = os.path.join(self.tmp, "run", "joblogd.sock")
        os.mkdir(os.path.dirname(sock))
        self.assertEqual(joblog_client.default_spool_dir(sock), Path(self.tmp) / "run")
        real = joblog_client.os.access
        saved = os.environ.get("XDG_STATE_HOME")
        try:
            # The socket's directory under systemd belongs to the daemon's
            # user (the tests run as root, for whom access() says yes).
            joblog_client.os.access = lambda p, m: real(p, m) and str(p) != os.path.dirname(sock)
            os.environ["XDG_STATE_HOME"] = os.path.join(self.tmp, "state")
            self.assertEqual(joblog_client.default_spool_dir(sock), Path(self.tmp) / "state" / "joblog")
        finally:
            joblog_client.os.access = real
            if saved is None:
                del os.environ["XDG_STATE_HOME"]
            else:
                os.environ["XDG_STATE_HOME"] = saved

    def test_daemon_restart_during_logging_loses_and_duplicates_nothing(self):
        self._restart_during_logging()  # pipelined (the default)

    def test_daemon_restart_during_durable_logging_loses_and_duplicates_nothing(self):
        self._restart_during_logging(durable=True)

    def _restart_during_logging(self, **kw):
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.0, **kw)
        stop = threading.Event()
        sent = []

        def run():
            i = 0
            while not stop.is_set():
                lg.log_job({"i": i})
                sent.append(i)
                i += 1

        t = threading.Thread(target=run)
        with self.assertLogs("joblog_client", level="WARNING"):
            t.start()
            time.sleep(0.5)
            self.assertEqual(self.daemon.stop(), 0)
            time.sleep(0.5)
            self.daemon.start()
            time.sleep(1.5)
            stop.set()
            t.join()
        lg.flush()
        got = [r["i"] for r in self.daemon.records()]
        self.assertEqual(got, sent, "every record exactly once, in order")
        self.assertGreater(len(sent), 100)

    def test_a_daemon_killed_while_logging_loses_and_duplicates_nothing(self):
        # Pipelined (the default): every request in flight is in the window
        # until its ack, and the window is sent again or spooled.
        self._killed_while_logging(single=False)

    def test_a_daemon_killed_while_logging_one_by_one_loses_and_duplicates_nothing(self):
        self._killed_while_logging(single=True)

    def test_a_daemon_killed_while_logging_durably_loses_and_duplicates_nothing(self):
        self._killed_while_logging(single=False, durable=True)

    def _killed_while_logging(self, single, **kw):
        # SIGKILL: records read and written but not yet acknowledged are
        # sent again (same record_id) and answered as duplicates; records
        # read and not written are sent again and written.
        self.daemon.start()
        lg = JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.0, **kw)
        stop = threading.Event()
        sent = []

        def run():
            i = 0
            while not stop.is_set():
                if single:
                    lg.log_job({"i": i})
                    sent.append(i)
                    i += 1
                    continue
                lg.log_jobs_batch([{"i": i + k} for k in range(5)])
                sent.extend(range(i, i + 5))
                i += 5

        t = threading.Thread(target=run)
        with self.assertLogs("joblog_client", level="WARNING"):
            t.start()
            time.sleep(0.5)
            self.daemon.proc.kill()
            self.daemon.proc.wait(10)
            self.daemon.stderr.close()
            time.sleep(0.3)
            self.daemon.start()
            time.sleep(1.5)
            stop.set()
            t.join()
        lg.flush()
        got = self.daemon.records()
        self.assertEqual([r["i"] for r in got], sent, "every record exactly once, in order")
        self.assertEqual(len({r["record_id"] for r in got}), len(got))
        self.assertGreater(len(sent), 100)


class Pipelined(unittest.TestCase):
    """log_job writes its request and returns; a reader thread collects the
    acks; what is not acknowledged stays in a bounded window and is sent
    again or spooled (protocol.md, The Python client)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="jlpy-", dir="/tmp")
        self.daemon = Daemon(self.tmp).start()

    def tearDown(self):
        if self.daemon.proc and self.daemon.proc.poll() is None:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logger(self, **kw):
        return JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, **kw)

    def test_flush_returns_once_every_record_is_acknowledged(self):
        lg = self.logger()
        for i in range(200):
            lg.log_job({"i": i})
        lg.flush()
        self.assertEqual(lg._pipe.records, 0, "window empty after flush")
        self.assertEqual([r["i"] for r in self.daemon.records()], list(range(200)))
        # Queries see what was logged before them.
        lg.log_job({"i": 200})
        self.assertEqual(len(lg.get_all_jobs()), 201)

    def test_calls_coalesce_into_few_requests(self):
        # A hot loop queues records faster than one request per record
        # could be written: the sender thread takes what queued meanwhile.
        lg = self.logger()
        for i in range(3000):
            lg.log_job({"i": i})
        lg.flush()
        self.assertEqual([r["i"] for r in self.daemon.records()], list(range(3000)))
        self.assertLess(lg._pipe.requests, 3000 // 4, "requests written for 3,000 calls")

    def test_a_multiprocessing_child_that_ends_without_flush_loses_nothing(self):
        # The child ends with os._exit after multiprocessing's finalizers:
        # what it queued for the sender thread is sent (or spooled) then.
        lg = self.logger()

        def work(n):
            for i in range(n):
                lg.log_job({"child": i})

        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=work, args=(50,)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            self.assertEqual(p.exitcode, 0)
        lg.flush()
        got = [r["child"] for r in self.daemon.records()]
        self.assertEqual(sorted(got), sorted(list(range(50)) * 4))

    def test_closing_a_logger_ends_its_threads_and_connections(self):
        before = threading.active_count()
        for i in range(10):
            with self.logger() as lg:
                lg.log_job({"i": i})
        deadline = time.monotonic() + 5  # the threads see the close and end
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(threading.active_count(), before, [t.name for t in threading.enumerate()])
        self.assertEqual(sorted(r["i"] for r in self.daemon.records()), list(range(10)))

    def test_record_ids_never_repeat_across_threads_and_forks(self):
        ids = []
        threads = [threading.Thread(target=lambda: ids.extend(joblog_client._uuid7() for _ in range(2000)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(set(ids)), 8000)
        # A child forked now must not reuse the random bytes its parent
        # has read ahead but not used yet.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.write(w, "\n".join(joblog_client._uuid7() for _ in range(50)).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            child = f.read().split("\n")
        os.waitpid(pid, 0)
        parent = [joblog_client._uuid7() for _ in range(50)]
        self.assertEqual(len(child), 50)
        self.assertEqual(len(set(child) | set(parent)), 100, "no id shared by parent and child")
        # Same millisecond, different random bits: the last 80 bits differ.
        self.assertEqual(len({i.replace("-", "")[12:] for i in child + parent}), 100)

    def test_durable_returns_after_the_ack(self):
        lg = self.logger(durable=True)
        lg.log_job({"i": 0})
        self.assertIsNone(lg._pipe, "no pipelined connection")
        self.assertEqual([r["i"] for r in self.daemon.records()], [0], "on disk when log_job returns")

    def test_a_stalled_daemon_never_blocks_log_job_and_loses_nothing(self):
        lg = self.logger(timeout=0.3)
        lg.log_job({"i": -1})
        lg.flush()
        self.daemon.proc.send_signal(signal.SIGSTOP)
        longest = 0.0
        try:
            with self.assertLogs("joblog_client", level="WARNING"):
                for i in range(3000):  # past the window (1,000 records)
                    t0 = time.monotonic()
                    lg.log_job({"i": i, "pad": "x" * 100})
                    longest = max(longest, time.monotonic() - t0)
        finally:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.assertLess(longest, 0.3 + 2, "a call waits about timeout at most")
        with self.assertRaises(JobLogUnavailable):
            # Stopped again: flush waits its timeout, then raises; the
            # records not acknowledged are spooled, not lost.
            self.daemon.proc.send_signal(signal.SIGSTOP)
            try:
                lg.log_job({"i": 3000})
                lg.flush(timeout=0.3)
            finally:
                self.daemon.proc.send_signal(signal.SIGCONT)
        lg.flush()
        got = [r["i"] for r in self.daemon.records()]
        self.assertEqual(sorted(got), list(range(-1, 3001)), "each once")

    def test_the_window_is_bounded(self):
        lg = self.logger(timeout=0.5)
        lg.log_job({"i": -1})
        lg.flush()
        old = joblog_client._WINDOW
        joblog_client._WINDOW = 10
        self.addCleanup(setattr, joblog_client, "_WINDOW", old)
        self.daemon.proc.send_signal(signal.SIGSTOP)
        most = 0
        try:
            with self.assertLogs("joblog_client", level="WARNING"):
                for i in range(30):
                    lg.log_job({"i": i})
                    if lg._pipe is not None:
                        most = max(most, lg._pipe.records)
        finally:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.assertLessEqual(most, 10)
        self.assertGreater(most, 0)
        lg.flush()
        self.assertEqual(sorted(r["i"] for r in self.daemon.records()), list(range(-1, 30)))

    def test_a_refused_record_is_logged_and_the_others_land_in_order(self):
        deep = {"video_id": "deep"}
        node = deep
        for _ in range(200):
            node["a"] = {}
            node = node["a"]
        lg = self.logger()
        with self.assertLogs("joblog_client", level="ERROR") as logs:
            for i in range(50):
                lg.log_job(deep if i == 20 else {"i": i})
            lg.flush()
        self.assertEqual(len([r for r in logs.records if r.levelno >= logging.ERROR]), 1, logs.output)
        self.assertIn("too_deep", "\n".join(logs.output))
        got = [r["i"] for r in self.daemon.records()]
        self.assertEqual(sorted(got), [i for i in range(50) if i != 20])
        self.assertEqual(len(got), len(set(got)), "each once")

    def test_records_in_flight_are_settled_at_exit(self):
        code = (
            "import sys; sys.path.insert(0, sys.argv[3])\n"
            "from joblog_client import JobLogger\n"
            "lg = JobLogger(socket_path=sys.argv[1], spool_dir=sys.argv[2])\n"
            "for i in range(500): lg.log_job({'i': i})\n"
        )
        out = subprocess.run([sys.executable, "-c", code, self.daemon.socket, self.tmp, str(HERE.parent)],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([r["i"] for r in self.daemon.records()], list(range(500)))

    def test_a_forked_child_leaves_the_parents_window_alone(self):
        lg = self.logger()
        for i in range(100):
            lg.log_job({"p": i})
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if lg._pipe is None:
                    lg.log_job({"c": 0})
                    lg.flush()
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        for i in range(100, 200):
            lg.log_job({"p": i})
        lg.flush()
        got = self.daemon.records()
        self.assertEqual([r["p"] for r in got if "p" in r], list(range(200)))
        self.assertEqual([r["c"] for r in got if "c" in r], [0])


class Package(unittest.TestCase):
    """clients/python as a package (the wheel itself: tests/python.rs)."""

    def test_the_version_follows_the_crate(self):
        cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
        crate = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S).group(1)
        self.assertEqual(joblog_client.__version__, crate)
        pyproject = (HERE.parent / "pyproject.toml").read_text(encoding="utf-8")
        self.assertIn('version = {attr = "joblog_client.__version__"}', pyproject)

    def test_it_is_a_typed_package(self):
        self.assertEqual(Path(joblog_client.__file__).name, "__init__.py")
        self.assertTrue((Path(joblog_client.__file__).parent / "py.typed").is_file())
        for name in joblog_client.__all__:
            self.assertTrue(hasattr(joblog_client, name), name)

    def test_error_classes(self):
        self.assertTrue(issubclass(JobLogUnavailable, JobLogError))
        self.assertTrue(issubclass(JobLogUnavailable, ConnectionError))
        self.assertTrue(issubclass(JobLogForbidden, JobLogError))
        self.assertTrue(issubclass(JobLogForbidden, PermissionError))
        self.assertFalse(issubclass(JobLogForbidden, RuntimeError))
        self.assertTrue(issubclass(JobLogRequestError, JobLogError))
        self.assertTrue(issubclass(JobLogRequestError, RuntimeError))
        e = JobLogRequestError("write_failed", "disk full")
        self.assertEqual((e.code, e.message), ("write_failed", "disk full"))
        self.assertIn("journalctl", str(e))
        f = JobLogForbidden("peer uid 7 may not clear")
        self.assertEqual((f.code, f.message), ("forbidden", "peer uid 7 may not clear"))
        self.assertIn("--admin-uid", str(f))
        # They cross process boundaries (multiprocessing pickles them) whole.
        for err in (e, f, JobLogUnavailable("gone")):
            back = pickle.loads(pickle.dumps(err))
            self.assertIs(type(back), type(err))
            self.assertEqual(str(back), str(err))
            self.assertEqual(getattr(back, "code", None), getattr(err, "code", None))


class Errors(Base):
    def test_an_unreachable_daemon_says_what_was_tried_and_how_to_start_it(self):
        gone = os.path.join(self.tmp, "gone.sock")
        with self.assertLogs("joblog_client", level="WARNING") as cm:
            lg = self.logger(socket_path=gone, timeout=0.3)
        self.assertIn("systemctl start joblogd.socket", cm.output[0])
        with self.assertRaises(JobLogUnavailable) as raised:
            lg.get_all_jobs()
        msg = str(raised.exception)
        self.assertIsInstance(raised.exception, JobLogError)
        self.assertIsInstance(raised.exception, ConnectionError)
        for want in (f"tried {gone}", "No such file", "given by socket_path= or JOBLOGD_SOCKET",
                     "`systemctl start joblogd.socket`", "`joblogd`", "/run/joblogd/joblogd.sock"):
            self.assertIn(want, msg)

    def test_a_socket_found_by_default_names_every_path_looked_at(self):
        runtime = Path(self.tmp) / "runtime"
        runtime.mkdir(mode=0o700)
        saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "JOBLOGD_SOCKET")}
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        os.environ.pop("JOBLOGD_SOCKET", None)
        try:
            with self.assertLogs("joblog_client", level="WARNING"):
                lg = JobLogger(spool_dir=self.tmp, timeout=0.3)
            if lg.socket_path != str(runtime / "joblogd.sock"):
                self.skipTest(f"a system daemon listens at {lg.socket_path}")
            with self.assertRaises(JobLogUnavailable) as raised:
                lg.flush()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        msg = str(raised.exception)
        self.assertIn(f"tried {runtime / 'joblogd.sock'}", msg)
        self.assertIn("found by default", msg)
        self.assertIn("/run/joblogd/joblogd.sock: no socket there", msg)
        self.assertIn(f"`joblogd` for your own ({runtime / 'joblogd.sock'})", msg)

    def test_other_error_replies_raise_a_request_error_with_code_and_message(self):
        lg = self.logger()
        with self.assertRaises(JobLogRequestError) as raised:
            lg._query({"op": "no_such_op"})
        e = raised.exception
        self.assertEqual(e.code, "unknown_op")
        self.assertTrue(e.message)
        self.assertIn("unknown_op", str(e))
        self.assertIsInstance(e, RuntimeError)  # as the client raised before
        self.assertIsInstance(e, JobLogError)

    def test_refusals_of_another_user_say_what_decides(self):
        # A worker as another user (nobody): one daemon lets it log but not
        # clear, one does not let it connect, one's socket it may not open.
        if os.getuid() != 0 or not os.access("/usr/bin/python3", os.X_OK):
            print("SKIPPED: needs root and /usr/bin/python3 to run a client as another user", file=sys.stderr)
            return
        os.chmod(self.tmp, 0o711)
        spool = Path(self.tmp) / "nobody-spool"
        spool.mkdir(mode=0o700)
        os.chown(spool, 65534, 65534)
        script = (
            "import sys; sys.path.insert(0, %r)\n"
            "from joblog_client import JobLogger, JobLogError\n"
            "lg = JobLogger(socket_path=%r, spool_dir=%r, timeout=2)\n"
            "lg.log_job({'video_id': 'from-nobody'})\n"
            "try:\n"
            "    getattr(lg, sys.argv[1])()\n"
            "except JobLogError as e:\n"
            "    print(type(e).__name__, isinstance(e, PermissionError), isinstance(e, RuntimeError),\n"
            "          getattr(e, 'code', None))\n"
            "    print(e)\n"
            "else:\n"
            "    sys.exit(sys.argv[1] + ' raised nothing')\n"
        ) % (str(HERE.parent), self.daemon.socket, str(spool))

        def as_nobody(call, *daemon_args):
            self.daemon.stop()
            self.daemon.extra = list(daemon_args)
            self.daemon.start()
            out = subprocess.run(["/usr/bin/python3", "-c", script, call], user=65534, group=65534,
                                 extra_groups=[], env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
                                 cwd="/", capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            return out.stdout.split("\n", 1)

        kind, said = as_nobody("clear_log", "--socket-mode", "0666", "--allow-uid", "0,65534", "--admin-uid", "0")
        self.assertEqual(kind, "JobLogForbidden True False forbidden")
        self.assertIn("--admin-uid", said)
        self.assertEqual([r["video_id"] for r in self.daemon.records()], ["from-nobody"], "logged, not cleared")
        kind, said = as_nobody("get_all_jobs", "--socket-mode", "0666")
        self.assertEqual(kind, "JobLogForbidden True False forbidden")
        self.assertIn("--allow-uid", said)
        self.assertEqual(len(list(spool.iterdir())), 1, "the refused record waits in the spool")
        kind, said = as_nobody("get_all_jobs")  # the socket is 0660, root's
        self.assertEqual(kind, "JobLogUnavailable False False None")
        for want in ("Permission denied", "usermod -aG joblog", "systemctl start joblogd.socket"):
            self.assertIn(want, said)


class ContextManager(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="jlpy-", dir="/tmp")
        self.daemon = Daemon(self.tmp)

    def tearDown(self):
        self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_leaving_the_block_sends_the_spool_and_closes(self):
        with self.assertLogs("joblog_client", level="WARNING"):
            with JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5) as lg:
                self.assertIsInstance(lg, JobLogger)
                lg.log_jobs_batch([{"i": 0}, {"i": 1}])
                self.assertEqual(len(lg.spool_file.read_text().splitlines()), 2)
                self.daemon.start()
        # No flush() called: leaving the block sent them.
        self.assertEqual([r["i"] for r in self.daemon.records()], [0, 1])
        self.assertFalse(lg.spool_file.exists())
        self.assertIsNone(lg._conn, "closed")

    def test_leaving_the_block_never_raises_and_keeps_the_spool(self):
        t0 = time.monotonic()
        with self.assertLogs("joblog_client", level="WARNING") as cm:
            with self.assertRaises(KeyError):  # the block's own exception goes through
                with JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.3) as lg:
                    lg.log_job({"i": 0})
                    raise KeyError("the application's")
        self.assertLess(time.monotonic() - t0, 3)
        self.assertTrue(any("spooled records not sent" in m for m in cm.output), cm.output)
        self.assertEqual(len(lg.spool_file.read_text().splitlines()), 1)

    def test_leaving_the_block_waits_no_longer_than_the_timeout(self):
        # A stalled daemon: flush() would wait for the query timeout (60 s).
        self.daemon.start()
        with JobLogger(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=0.5) as lg:
            lg.log_job({"i": 0})
            lg.flush()
            self.daemon.proc.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()
        took = time.monotonic() - t0
        self.daemon.proc.send_signal(signal.SIGCONT)
        self.assertLess(took, 5, "waited for the query timeout")
        self.assertEqual([r["i"] for r in self.daemon.records()], [0])


class Handler(Base):
    def setUp(self):
        super().setUp()
        self.log = logging.getLogger(f"jobs.test.{self.id()}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        self.addCleanup(self._detach)

    def _detach(self):
        for h in list(self.log.handlers):
            self.log.removeHandler(h)
            h.close()

    def test_a_record_with_a_job_is_logged_as_that_job(self):
        handler = JobLogHandler(socket_path=self.daemon.socket, spool_dir=self.tmp)
        self.log.addHandler(handler)

        class Job:
            def to_json(self):
                return {"video_id": "obj", "success": False}

        self.log.info("done", extra={"job": {"video_id": "abc123", "success": True, "stage": "completed"}})
        self.log.info("plain message: not a job")
        self.log.warning("failed", extra={"job": Job()})
        handler.joblogger.flush()
        got = self.daemon.records()
        self.assertEqual([{k: r[k] for k in r if k not in ("record_id", "logged_at")} for r in got],
                         [{"video_id": "abc123", "success": True, "stage": "completed"},
                          {"video_id": "obj", "success": False}])
        self.assertTrue(all(r["record_id"] for r in got))

    def test_dict_config_with_class_or_factory(self):
        jobs = f"{self.log.name}.a"
        more = f"{self.log.name}.b"
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "by_class": {"class": "joblog_client.JobLogHandler", "level": "INFO",
                             "socket_path": self.daemon.socket, "spool_dir": self.tmp, "timeout": 1.0},
                "by_factory": {"()": "joblog_client.JobLogHandler",
                               "socket_path": self.daemon.socket, "spool_dir": self.tmp},
            },
            "loggers": {
                jobs: {"handlers": ["by_class"], "level": "INFO", "propagate": False},
                more: {"handlers": ["by_factory"], "level": "INFO", "propagate": False},
            },
        })
        handlers = logging.getLogger(jobs).handlers + logging.getLogger(more).handlers
        self.addCleanup(lambda: [(h.close(), logging.getLogger(n).removeHandler(h))
                                 for n in (jobs, more) for h in list(logging.getLogger(n).handlers)])
        self.assertEqual([type(h) for h in handlers], [JobLogHandler, JobLogHandler])
        self.assertEqual(handlers[0].joblogger.timeout, 1.0)
        logging.getLogger(jobs).debug("below the level", extra={"job": {"video_id": "debug"}})
        logging.getLogger(jobs).info("done", extra={"job": {"video_id": "by-class"}})
        logging.getLogger(more).info("done", extra={"job": {"video_id": "by-factory"}})
        for h in handlers:
            h.joblogger.flush()
        self.assertEqual([r["video_id"] for r in self.daemon.records()], ["by-class", "by-factory"])

    def test_a_given_logger_is_used_and_left_open(self):
        lg = self.logger()
        handler = JobLogHandler(lg)
        self.assertIs(handler.joblogger, lg)
        self.log.addHandler(handler)
        self.log.info("x", extra={"job": {"video_id": "given"}})
        self.log.removeHandler(handler)
        handler.close()
        lg.log_job({"video_id": "after"})
        lg.flush()
        self.assertEqual([r["video_id"] for r in self.daemon.records()], ["given", "after"])
        with self.assertRaises(ValueError):
            JobLogHandler(lg, socket_path=self.daemon.socket)

    def test_never_raises_into_the_application(self):
        errors = []

        class Counting(JobLogHandler):
            def handleError(self, record):
                errors.append(record)

        # A JobLogger that cannot be made (a timeout that is no number).
        self.log.addHandler(Counting(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout="soon"))
        self.log.info("x", extra={"job": {"video_id": "lost"}})  # no exception here
        self.assertEqual(len(errors), 1)
        self._detach()
        # A job that cannot be serialized: log_job logs it, raises nothing.
        self.log.addHandler(Counting(socket_path=self.daemon.socket, spool_dir=self.tmp))
        loop = {"video_id": "loop"}
        loop["self"] = loop
        with self.assertLogs("joblog_client", level="ERROR"):
            self.log.info("x", extra={"job": loop})
        self.log.info("x", extra={"job": {"video_id": "next"}})
        self.log.handlers[-1].joblogger.flush()
        self.assertEqual(len(errors), 1)
        self.assertEqual([r["video_id"] for r in self.daemon.records()], ["next"])

    def test_never_blocks_much_longer_than_the_timeout(self):
        # A stalled daemon (SIGSTOP): each call returns within about the
        # client's timeout (the first one too, which makes the JobLogger),
        # and the jobs wait in the spool.
        self.log.addHandler(JobLogHandler(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.0))
        self.daemon.proc.send_signal(signal.SIGSTOP)
        try:
            with self.assertLogs("joblog_client", level="WARNING"):
                for i in range(4):
                    t0 = time.monotonic()
                    self.log.info("x", extra={"job": {"i": i}})
                    self.assertLess(time.monotonic() - t0, 1.7, i)
                    time.sleep(0.3)
        finally:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.log.handlers[0].joblogger.flush()
        self.assertEqual(sorted(r["i"] for r in self.daemon.records()), list(range(4)))

    def test_a_record_without_a_job_never_waits_for_one_with(self):
        self.log.addHandler(JobLogHandler(socket_path=self.daemon.socket, spool_dir=self.tmp, timeout=1.5))
        self.daemon.proc.send_signal(signal.SIGSTOP)
        try:
            with self.assertLogs("joblog_client", level="WARNING"):
                t = threading.Thread(target=self.log.info, args=("x",), kwargs={"extra": {"job": {"i": 0}}})
                t.start()
                time.sleep(0.3)  # t is in the handler, waiting for the daemon
                t0 = time.monotonic()
                self.log.info("no job")
                took = time.monotonic() - t0
                t.join()
        finally:
            self.daemon.proc.send_signal(signal.SIGCONT)
        self.assertLess(took, 0.5)


if __name__ == "__main__":
    unittest.main()
