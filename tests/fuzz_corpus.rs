//! The `line` fuzz target's findings, replayed on the stable toolchain: the
//! fuzzer itself needs nightly and runs outside CI (`fuzz/run.sh`), but
//! every input of its minimized corpus (`cargo fuzz cmin`, inputs up to
//! 4 KiB) goes through the same differential oracle here on every test run.
//!
//! `tests/fixtures/fuzz_line.bin` holds the inputs back to back, each as a
//! little-endian u32 length and its bytes.

mod oracle {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/oracle.rs"));
}

const CORPUS: &[u8] = include_bytes!("fixtures/fuzz_line.bin");

/// The inputs of [`CORPUS`].
fn inputs() -> Vec<&'static [u8]> {
    let mut rest = CORPUS;
    let mut out = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let (input, tail) = tail.split_at(len);
        out.push(input);
        rest = tail;
    }
    out
}

#[test]
fn the_minimized_fuzz_corpus_passes_the_differential_oracle() {
    let inputs = inputs();
    assert!(inputs.len() > 3000, "corpus has {} inputs", inputs.len());
    let mut failed = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if std::panic::catch_unwind(|| oracle::check_line(input)).is_err() {
            failed.push(format!("#{i}: {:?}", String::from_utf8_lossy(input)));
        }
    }
    assert!(failed.is_empty(), "oracle failures:\n{}", failed.join("\n"));
}
