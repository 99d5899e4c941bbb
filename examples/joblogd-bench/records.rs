//! The job records the bench sends: [`Kind`] (small, ~1.2 KB lines, or
//! seed-sized, ~14 KB with a transcript) and [`Gen`], a deterministic
//! generator of realistic records (xorshift64*, no dependency) that every
//! section draws from.

use std::io::Write as _;

/// Characters of transcript in a seed-sized record.
pub(crate) const TRANSCRIPT_CHARS: usize = 12_500;
/// Distinct transcripts (records stay unique through their ids).
const TRANSCRIPT_VARIANTS: usize = 16;

const SUBJECTS: &[&str] = &[
    "AI",
    "Physics",
    "History",
    "Mathematics",
    "Biology",
    "Economics",
    "Chemistry",
    "Philosophy",
];

const TITLES: &[&str] = &[
    "Introduction to Machine Learning",
    "Quantum Mechanics Fundamentals",
    "The Fall of the Roman Empire",
    "Eigenvalues and Eigenvectors",
    "Structure of the Cell Membrane",
    "Supply and Demand Explained",
    "Organic Reaction Mechanisms",
    "Kant: Critique of Pure Reason",
    "Neural Networks from Scratch",
    "Thermodynamics and Entropy",
    "Causes of World War One",
];

const WORDS: &str = "the model learning data we can see that this function gradient descent is a very \
    important idea and so when you look at training set loss of network layer \
    weights basically right now example let's consider probability distribution over \
    inputs outputs error in our case value matrix vector because it turns out simple \
    question answer today lecture going to talk about how works";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// A realistic job record with an empty transcript (~1.2 KB line).
    Small,
    /// The same with a 12,500-character transcript (~14 KB line).
    Seed,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Small => "small",
            Kind::Seed => "seed",
        }
    }
}

/// xorshift64*: deterministic, dependency-free.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn make_transcript(rng: &mut u64, chars: usize) -> String {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut s = String::with_capacity(chars + 32);
    let mut since_stop = 0;
    while s.len() < chars {
        let w = words[(next_rand(rng) % words.len() as u64) as usize];
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(w);
        since_stop += 1;
        if since_stop > 8 && next_rand(rng).is_multiple_of(6) {
            s.push('.');
            since_stop = 0;
        }
    }
    s.truncate(chars);
    s
}

/// Generates job records as newline-free compact JSON.
pub(crate) struct Gen {
    transcripts: Vec<String>,
    file_titles: Vec<String>,
}

impl Gen {
    pub(crate) fn new() -> Gen {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        Gen {
            transcripts: (0..TRANSCRIPT_VARIANTS)
                .map(|_| make_transcript(&mut rng, TRANSCRIPT_CHARS))
                .collect(),
            file_titles: TITLES.iter().map(|t| t.replace(' ', "_")).collect(),
        }
    }

    /// Appends one record (no newline). `id` makes it unique; every tenth
    /// record is a failure.
    pub(crate) fn record(&self, out: &mut Vec<u8>, kind: Kind, id: &str, worker: usize, n: u64) {
        let t = n as usize;
        let transcript = match kind {
            Kind::Small => "",
            Kind::Seed => &self.transcripts[t % self.transcripts.len()],
        };
        let subject = SUBJECTS[(t / 7) % SUBJECTS.len()];
        let ti = t % TITLES.len();
        let title = TITLES[ti];
        let ft = &self.file_titles[ti];
        let start = 1_697_543_210.123 + n as f64 * 1.7;
        let took = 20.0 + (n % 50) as f64 * 0.8;
        let end = start + took;
        let (mm, ss) = (5 + n % 40, n % 60);
        let len = TRANSCRIPT_CHARS;
        let method = if n.is_multiple_of(4) {
            "whisper"
        } else {
            "api"
        };
        let _ = write!(
            out,
            r#"{{"video_id":"{id}","url":"https://youtu.be/{id}","subject":"{subject}","worker_id":{worker},"video_title":"{title}","transcript":"{transcript}","transcript_metadata":{{"duration":"{mm}:{ss:02}","length":{len},"method":"{method}"}},"#
        );
        if n % 10 == 3 {
            let retries = 1 + n % 3;
            let fetch = took * 0.1;
            let next = end + 60.0 * retries as f64;
            let _ = write!(
                out,
                r#""has_notes":false,"has_assessment":false,"notes_length":0,"assessment_length":0,"output_dir":"notes/{subject}","notes_filepath":null,"assessment_filepath":null,"notes_file_exists":false,"assessment_file_exists":false,"pdf_subdir":"notes/{subject}/pdfs","notes_pdf_path":null,"assessment_pdf_path":null,"notes_pdf_exists":false,"assessment_pdf_exists":false,"stage":"generating_notes","success":false,"error":"API rate limit exceeded: 429 Too Many Requests","start_time":{start:.3},"end_time":{end:.3},"processing_duration":{took:.1},"timings":{{"fetch_transcript":{fetch:.1}}},"retry_count":{retries},"last_retry_time":{end:.3},"next_retry_time":{next:.3},"is_retryable":true,"files_created":[],"total_files":0}}"#
            );
        } else {
            let notes = 3000 + (n * 37) % 4000;
            let assessment = 2000 + (n * 53) % 3000;
            let (a, b, c) = (took * 0.1, took * 0.55, took * 0.22);
            let d = took - a - b - c - 0.5;
            let _ = write!(
                out,
                r#""has_notes":true,"has_assessment":true,"notes_length":{notes},"assessment_length":{assessment},"output_dir":"notes/{subject}","notes_filepath":"notes/{subject}/{ft}.md","assessment_filepath":"notes/{subject}/Assessment_{ft}.md","notes_file_exists":true,"assessment_file_exists":true,"pdf_subdir":"notes/{subject}/pdfs","notes_pdf_path":"notes/{subject}/pdfs/{ft}.pdf","assessment_pdf_path":"notes/{subject}/pdfs/Assessment_{ft}.pdf","notes_pdf_exists":true,"assessment_pdf_exists":true,"stage":"completed","success":true,"error":null,"start_time":{start:.3},"end_time":{end:.3},"processing_duration":{took:.1},"timings":{{"fetch_transcript":{a:.1},"generate_notes":{b:.1},"generate_assessment":{c:.1},"write_files":0.5,"export_pdfs":{d:.1}}},"retry_count":0,"last_retry_time":null,"next_retry_time":null,"is_retryable":true,"files_created":["notes/{subject}/{ft}.md","notes/{subject}/Assessment_{ft}.md"],"total_files":4}}"#
            );
        }
    }

    /// One record as a line.
    pub(crate) fn line(&self, out: &mut Vec<u8>, kind: Kind, id: &str, worker: usize, n: u64) {
        self.record(out, kind, id, worker, n);
        out.push(b'\n');
    }

    /// `total` unique record lines split over `writers` buffers.
    pub(crate) fn writer_buffers(
        &self,
        kind: Kind,
        total: usize,
        writers: usize,
        tag: &str,
    ) -> Vec<Vec<u8>> {
        let approx = match kind {
            Kind::Small => 1_300,
            Kind::Seed => 14_000,
        };
        (0..writers)
            .map(|w| {
                let count = total / writers + usize::from(w < total % writers);
                let mut buf = Vec::with_capacity(count * approx);
                for i in 0..count {
                    let id = format!("{tag}{w:02}x{i:07}");
                    self.line(&mut buf, kind, &id, w, i as u64);
                }
                buf
            })
            .collect()
    }
}
