"""Three worker threads process fake videos, log each job through the
joblogd Python client, then print the guide's Processing Report from
get_statistics().

    cargo run --release &                      # or: systemctl start joblogd.socket
    PYTHONPATH=clients/python python3 examples/pipeline_demo.py
"""

import random
import time
from concurrent.futures import ThreadPoolExecutor

from joblog_client import create_default_logger

STAGES = ["fetching_transcript", "generating_notes", "generating_assessment", "writing_files", "exporting_pdfs"]
ERRORS = {
    "fetching_transcript": "Transcript not available: video is private",
    "generating_notes": "API rate limit exceeded: 429 Too Many Requests",
    "generating_assessment": "Network timeout",
    "exporting_pdfs": "PDF export failed: wkhtmltopdf not found",
}


class VideoJob:
    """Stands in for the pipeline's job object: it has to_json()."""

    def __init__(self, worker_id, n):
        self.video_id = f"demo{n:04d}"
        self.worker_id = worker_id
        self.subject = random.choice(["AI", "Physics", "History"])
        self.stage = "queued"
        self.success = False
        self.error = None
        self.timings = {}
        self.start_time = time.time()
        self.end_time = None

    def run(self):
        for stage in STAGES:
            self.stage = stage
            took = random.uniform(0.001, 0.01)
            time.sleep(took)
            self.timings[stage] = round(took * 1000, 2)  # pretend seconds
            if stage in ERRORS and random.random() < 0.08:
                self.error = ERRORS[stage]
                break
        else:
            self.stage, self.success = "completed", True
        self.end_time = time.time()
        return self

    def to_json(self):
        return {
            "video_id": self.video_id,
            "url": f"https://youtu.be/{self.video_id}",
            "subject": self.subject,
            "worker_id": self.worker_id,
            "video_title": f"Demo video {self.video_id}",
            "stage": self.stage,
            "success": self.success,
            "error": self.error,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "processing_duration": round(sum(self.timings.values()), 2),
            "timings": self.timings,
            "total_files": 4 if self.success else 0,
        }


def main():
    logger = create_default_logger()
    jobs = [VideoJob(n % 3, n) for n in range(30)]

    def process(job):
        logger.log_job(job.run())

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(process, jobs))

    stats = logger.get_statistics()
    report = f"""
Processing Report
=================

Total Jobs: {stats['total_jobs']}
Successful: {stats['successful']} ({stats['success_rate']*100:.1f}%)
Failed: {stats['failed']}
Average Duration: {(stats['average_duration'] or 0):.1f}s
Files Created: {stats['total_files_created']}

Error Breakdown:
"""
    for error_type, count in stats["error_types"].items():
        report += f"  - {error_type}: {count}\n"
    print(report)


if __name__ == "__main__":
    main()
