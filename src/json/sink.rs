//! Where formatted bytes go: a `Vec` (with 32-byte over-copies of string
//! runs), or `Discard` when only validating.

use super::*;

/// Where the printer writes. `Vec<u8>` collects the pretty-printed bytes;
/// [`Discard`] validates only (the start-up scan of an existing file).
pub(crate) trait Sink {
    fn push(&mut self, b: u8);
    fn extend(&mut self, s: &[u8]);
    fn len(&self) -> usize;
    /// Bytes written so far in `r` (empty for a sink that keeps nothing).
    fn written(&self, r: Range<usize>) -> &[u8];
    /// Copies the run of plain string bytes at `i` (up to the first `"`,
    /// `\` or byte below 0x20, or the end of the input) and returns where it
    /// ends and whether it holds bytes >= 0x80 (to be checked as UTF-8).
    fn string_run(&mut self, input: &[u8], i: usize) -> (usize, bool);
    /// Writes `input[r]` (a short token, such as a number).
    fn extend_from(&mut self, input: &[u8], r: Range<usize>);
    /// Writes a newline and `n` spaces.
    fn newline_spaces(&mut self, n: usize);
}

/// A newline and spaces: indentation is sliced from here (deeper levels
/// are written in pieces).
pub(super) const NL_SPACES: &[u8; 257] = &{
    let mut a = [b' '; 257];
    a[0] = b'\n';
    a
};

/// Copies exactly 32 bytes from `src` to the end of `out`'s initialised
/// part and exposes `n <= 32` of them: a fixed-size copy compiles to two
/// vector moves, where a copy of a variable length is a call.
#[inline(always)]
pub(super) fn overcopy32(out: &mut Vec<u8>, src: &[u8; 32], n: usize) {
    debug_assert!(n <= 32);
    out.reserve(32);
    let len = out.len();
    // SAFETY: `reserve` made room for 32 bytes past `len`, all initialised
    // by the copy; only the first `n <= 32` are exposed.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().add(len), 32);
        out.set_len(len + n.min(32));
    }
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        Vec::push(self, b)
    }
    #[inline(always)]
    fn extend(&mut self, s: &[u8]) {
        // Not `extend_from_slice`, which the compiler keeps out of line:
        // inlined, the many constant-length pieces (`": "`, `true`, an
        // indentation) become a few moves instead of a call each.
        self.reserve(s.len());
        let len = self.len();
        // SAFETY: `reserve` made room for `s.len()` more bytes past `len`;
        // they are initialised by the copy before `set_len` exposes them,
        // and `s` cannot overlap our spare capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.as_mut_ptr().add(len), s.len());
            self.set_len(len + s.len());
        }
    }
    #[inline(always)]
    fn string_run(&mut self, input: &[u8], i: usize) -> (usize, bool) {
        scan_run::<true>(self, input, i)
    }
    #[inline(always)]
    fn extend_from(&mut self, input: &[u8], r: Range<usize>) {
        match input.get(r.start..r.start + 32) {
            Some(block) if r.len() <= 32 => {
                if let Ok(block) = <&[u8; 32]>::try_from(block) {
                    overcopy32(self, block, r.len());
                }
            }
            _ => Sink::extend(self, &input[r]),
        }
    }
    #[inline(always)]
    fn newline_spaces(&mut self, n: usize) {
        if n < 32 {
            if let Ok(block) = <&[u8; 32]>::try_from(&NL_SPACES[..32]) {
                overcopy32(self, block, n + 1);
            }
        } else {
            Vec::push(self, b'\n');
            let mut n = n;
            while n > 0 {
                let k = n.min(NL_SPACES.len() - 1);
                Sink::extend(self, &NL_SPACES[1..=k]);
                n -= k;
            }
        }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline(always)]
    fn written(&self, r: Range<usize>) -> &[u8] {
        self.get(r).unwrap_or_default()
    }
}

/// A sink that keeps nothing: validation only.
#[derive(Default)]
pub(crate) struct Discard;

impl Sink for Discard {
    #[inline(always)]
    fn push(&mut self, _: u8) {}
    #[inline(always)]
    fn extend(&mut self, _: &[u8]) {}
    #[inline(always)]
    fn len(&self) -> usize {
        0
    }
    #[inline(always)]
    fn written(&self, _: Range<usize>) -> &[u8] {
        &[]
    }
    #[inline(always)]
    fn string_run(&mut self, input: &[u8], i: usize) -> (usize, bool) {
        scan_run::<false>(&mut Vec::new(), input, i)
    }
    #[inline(always)]
    fn extend_from(&mut self, _: &[u8], _: Range<usize>) {}
    #[inline(always)]
    fn newline_spaces(&mut self, _: usize) {}
}

/// [`Sink::string_run`]: sixteen bytes at a time, and with `COPY` each block
/// is stored to `out` whole before it is examined (the bytes past the stop
/// are then cut off by the length), so a short key or value costs one
/// load, one store and a few compares instead of a scan plus a `memcpy`.
/// The end of the input is handled a byte at a time.
#[inline(always)]
pub(super) fn scan_run<const COPY: bool>(
    out: &mut Vec<u8>,
    input: &[u8],
    mut i: usize,
) -> (usize, bool) {
    let mut high = false;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8, _mm_storeu_si128,
        };
        while i + 16 <= input.len() {
            if COPY {
                out.reserve(16);
            }
            // SAFETY: SSE2 is part of the x86_64 baseline. The load reads
            // input[i..i + 16], in bounds by the loop condition. The store
            // writes 16 bytes of spare capacity that `reserve` guaranteed;
            // `set_len` then exposes only bytes this store initialised.
            unsafe {
                let v = _mm_loadu_si128(input.as_ptr().add(i).cast::<__m128i>());
                if COPY {
                    _mm_storeu_si128(out.as_mut_ptr().add(out.len()).cast::<__m128i>(), v);
                }
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f.
                let low = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
                let stop =
                    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32;
                let hi = _mm_movemask_epi8(v) as u32;
                if stop != 0 {
                    let n = stop.trailing_zeros() as usize;
                    high |= hi & ((1u32 << n) - 1) != 0;
                    if COPY {
                        out.set_len(out.len() + n);
                    }
                    return (i + n, high);
                }
                high |= hi != 0;
                if COPY {
                    out.set_len(out.len() + 16);
                }
            }
            i += 16;
        }
    }
    let start = i;
    let end = string_run_end(input, i);
    let run = &input[start..end];
    if COPY {
        Sink::extend(out, run);
    }
    (end, high || !run.is_ascii())
}
