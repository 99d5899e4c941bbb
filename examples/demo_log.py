"""Prints a realistic job log as NDJSON, one record a line, for trying the
report (or anything else) on something that looks like a pipeline's week:
several subjects and workers, the guide's stages and timings, errors at
the stages where they happen, retries that later succeed, a quiet night,
and an afternoon when the notes API hits its rate limit.

    python3 examples/demo_log.py --records 4000 --days 2 | joblogctl log --ack
    joblogctl report --html report.html

The same seed gives the same records (`--seed`); `--start` sets the first
day (default 2025-10-16), so the output does not depend on the clock.
"""

import argparse
import datetime
import json
import random
import sys

SUBJECTS = ["AI", "Physics", "History", "Biology", "Economics"]
# Stage names as the pipeline logs them, and their timing names.
STAGES = [
    ("fetching_transcript", "fetch_transcript", 4.0),
    ("generating_notes", "generate_notes", 24.0),
    ("generating_assessment", "generate_assessment", 11.0),
    ("writing_files", "write_files", 0.4),
    ("exporting_pdfs", "export_pdfs", 4.5),
]
# Per stage: errors and how often each happens (per job reaching it).
ERRORS = {
    "fetching_transcript": [
        ("Transcript not available: video is private", 0.012),
        ("Transcript not available: no captions in any language", 0.008),
        ("Network timeout: youtube.com did not answer in 30 s", 0.006),
    ],
    "generating_notes": [
        ("API rate limit exceeded: 429 Too Many Requests", 0.012),
        ("Context length exceeded: transcript of 131072 tokens", 0.006),
    ],
    "generating_assessment": [
        ("API rate limit exceeded: 429 Too Many Requests", 0.006),
        ("Invalid response: assessment JSON did not parse", 0.008),
    ],
    "writing_files": [("Disk quota exceeded: notes/ is full", 0.002)],
    "exporting_pdfs": [("PDF export failed: wkhtmltopdf exited with status 1", 0.012)],
}
WORDS = ("Introduction Advanced Lecture Deep Dive Basics of Modern History Quantum "
         "Neural Networks Markets Cells Evolution Thermodynamics Revolutions Trade "
         "Genetics Optimization Relativity Empires Inflation").split()


def activity(hour):
    """Jobs per hour follow the working day: busy 9-18, quiet at night."""
    if 9 <= hour < 18:
        return 1.0
    if 7 <= hour < 9 or 18 <= hour < 22:
        return 0.5
    return 0.12


def incident(at, start):
    """The second afternoon, 14:00-16:30, the notes API is rate limited."""
    day = (at.date() - start.date()).days
    return day == 1 and (14 <= at.hour < 16 or (at.hour == 16 and at.minute < 30))


def times(n, start, days, rng):
    """n times over the days, denser in working hours, in order."""
    span = days * 86400
    out = []
    while len(out) < n:
        at = start + datetime.timedelta(seconds=rng.uniform(0, span))
        if rng.random() < activity(at.hour):
            out.append(at)
    out.sort()
    return out


def job(at, n, start, rng, failed_before):
    if failed_before and rng.random() < 0.05:
        video = rng.choice(failed_before)
        failed_before.remove(video)
    else:
        video = "v%06d" % n
    subject = rng.choices(SUBJECTS, weights=[5, 3, 2, 2, 1])[0]
    title = " ".join(rng.sample(WORDS, 3))
    rec = {
        "video_id": video,
        "url": "https://youtu.be/%s" % video,
        "subject": subject,
        "worker_id": rng.randrange(6),
        "video_title": title,
        "stage": "completed",
        "success": True,
        "error": None,
        "timings": {},
    }
    duration = 0.0
    for stage, timing, typical in STAGES:
        took = round(rng.lognormvariate(0, 0.35) * typical, 2)
        if stage == "generating_notes" and incident(at, start):
            took = round(took * 1.8, 2)
        rec["timings"][timing] = took
        duration += took
        errors = list(ERRORS.get(stage, []))
        if stage == "generating_notes" and incident(at, start):
            errors[0] = (errors[0][0], 0.35)
        for error, p in errors:
            if rng.random() < p:
                rec.update(stage=stage, success=False, error=error)
                break
        if not rec["success"]:
            failed_before.append(video)
            break
    rec["processing_duration"] = round(duration, 1)
    if rec["success"]:
        safe = title.replace(" ", "_")
        files = [
            "notes/%s/%s.md" % (subject, safe),
            "notes/%s/Assessment_%s.md" % (subject, safe),
            "notes/%s/pdfs/%s.pdf" % (subject, safe),
            "notes/%s/pdfs/Assessment_%s.pdf" % (subject, safe),
        ]
        rec.update(has_notes=True, has_assessment=True, files_created=files,
                   total_files=len(files))
    else:
        rec.update(has_notes=False, has_assessment=False, total_files=0)
    rec["logged_at"] = at.isoformat()
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--days", type=float, default=2)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--start", default="2025-10-16")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    start = datetime.datetime.fromisoformat(a.start)
    failed_before = []
    out = sys.stdout
    for n, at in enumerate(times(a.records, start, a.days, rng)):
        out.write(json.dumps(job(at, n, start, rng, failed_before), ensure_ascii=False))
        out.write("\n")


if __name__ == "__main__":
    main()
