//! The `line` target: see `../oracle.rs` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod oracle {
    include!("../oracle.rs");
}

fuzz_target!(|data: &[u8]| oracle::check_line(data));
