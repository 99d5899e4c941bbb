//! The guide's jq recipes ("Command-Line Analysis with jq") run as a user,
//! and what the worker must read with them and with `json.load`: the live
//! log after the walkthrough and the archive its clear_log made. Kept apart
//! from the role checks because the recipes and their expected output are
//! long and change with the guide, not with the setup.

use std::path::Path;

use serde_json::{Value, json};

use super::{LOAD, User, WORKER, both, stdout};

/// The worker reads the files as the guide does: `json.load` of the live
/// log, then every jq recipe on it and on the archive, whose outputs must
/// be the guide's example's (five jobs: three done, two failed).
pub(super) fn check_worker_reads(worker: &User, log: &Path, archive: &Path) {
    let o = worker
        .run("python3", &["-c", LOAD, log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "json.load as {WORKER}: {}", both(&o));
    assert_eq!(stdout(&o), "1");
    let live = run_recipes(worker, log);
    assert_eq!(
        values(recipe(&live, "count jobs by status")),
        [json!([{"status": true, "count": 1}])]
    );
    assert_eq!(recipe(&live, "URLs of failed videos"), "");
    let old = run_recipes(worker, archive);
    assert_eq!(
        values(recipe(&old, "count jobs by status")),
        [json!([{"status": false, "count": 2}, {"status": true, "count": 3}])]
    );
    assert_eq!(
        values(recipe(&old, "failed jobs with error messages")),
        [
            json!({"video_id": "xyz789", "title": "Failed Video",
                   "error": "API rate limit exceeded: 429 Too Many Requests",
                   "stage": "generating_notes"}),
            json!({"video_id": "abc456", "title": "Unreachable Video",
                   "error": "Network timeout", "stage": "fetching_transcript"}),
        ]
    );
    let avg = values(recipe(&old, "average duration of successful jobs"))[0]
        .as_f64()
        .unwrap();
    assert!((avg - 45.2).abs() < 1e-9, "average {avg}");
    assert_eq!(
        values(recipe(&old, "errors grouped by type")),
        [json!([
            {"error": "API rate limit exceeded: 429 Too Many Requests", "count": 1},
            {"error": "Network timeout", "count": 1}
        ])]
    );
    assert_eq!(
        values(recipe(&old, "jobs by worker")),
        [json!([
            {"worker": 0, "count": 2, "success": 2},
            {"worker": 1, "count": 1, "success": 0},
            {"worker": 2, "count": 2, "success": 1}
        ])]
    );
    assert_eq!(
        recipe(&old, "URLs of failed videos"),
        "https://youtu.be/xyz789\nhttps://youtu.be/abc456\n"
    );
    assert_eq!(
        values(recipe(&old, "failed jobs only"))[0]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

/// The guide's jq recipes ("Command-Line Analysis with jq"). The guide
/// writes `cat notes/processing_log.json | jq FILTER`; here `jq FILTER
/// FILE`, the same but for a failing `cat` that a pipe would hide.
const RECIPES: &[(&str, &[&str])] = &[
    ("view all jobs", &["."]),
    (
        "count jobs by status",
        &["[.[] | .success] | group_by(.) | map({status: .[0], count: length})"],
    ),
    ("failed jobs only", &["[.[] | select(.success == false)]"]),
    (
        "failed jobs with error messages",
        &[".[] | select(.success == false) | {video_id, title: .video_title, error, stage}"],
    ),
    (
        "average duration of successful jobs",
        &["[.[] | select(.success == true) | .processing_duration] | add / length"],
    ),
    (
        "errors grouped by type",
        &[
            "[.[] | select(.success == false) | .error] | group_by(.) | map({error: .[0], count: length})",
        ],
    ),
    (
        "longest processing jobs",
        &[
            "sort_by(.processing_duration) | reverse | .[0:5] | .[] | {title: .video_title, duration: .processing_duration}",
        ],
    ),
    (
        "jobs by worker",
        &[
            "group_by(.worker_id) | map({worker: .[0].worker_id, count: length, success: [.[] | select(.success == true)] | length})",
        ],
    ),
    (
        "URLs of failed videos",
        &["-r", ".[] | select(.success == false) | .url"],
    ),
    ("filter by subject", &[".[] | select(.subject == \"AI\")"]),
    (
        "timing breakdown",
        &[".[] | select(.success == true) | {title: .video_title, timings}"],
    ),
];

/// Every recipe run as `user` on `file`: each must exit 0. Returns each
/// recipe's output by name.
fn run_recipes(user: &User, file: &Path) -> Vec<(&'static str, String)> {
    RECIPES
        .iter()
        .map(|(name, args)| {
            let mut argv: Vec<&str> = args.to_vec();
            argv.push(file.to_str().unwrap());
            let o = user.run("jq", &argv).output().unwrap();
            assert!(
                o.status.success(),
                "jq recipe {name:?} as {}: {}",
                user.name,
                both(&o)
            );
            (*name, String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .collect()
}

fn recipe<'a>(outputs: &'a [(&str, String)], name: &str) -> &'a str {
    &outputs.iter().find(|(n, _)| *n == name).unwrap().1
}

/// jq's output: a stream of JSON values.
fn values(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("jq printed no JSON ({e}):\n{text}"))
}
