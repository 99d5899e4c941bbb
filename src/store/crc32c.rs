//! CRC-32C (Castagnoli), the checksum of each committed batch in the
//! sidecar ([`super::commits`]).
//!
//! CRC-32C because x86-64 computes it in hardware (SSE 4.2's `crc32`
//! instruction, several GB/s on one core, so checksumming a batch costs
//! little next to writing it), and because it is what ext4, iSCSI and
//! many storage formats use: tools to check it exist everywhere. A table
//! fallback covers other CPUs. Written here rather than taken as a crate:
//! it is forty lines, and the daemon's dependency tree stays small.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// One byte at a time, for the table fallback.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// A running CRC-32C: feed the pieces of a batch in order, then
/// [`Crc32c::finish`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(!0)
    }
}

impl Crc32c {
    pub(super) fn update(&mut self, bytes: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE 4.2, checked just above.
            self.0 = unsafe { hardware(self.0, bytes) };
            return;
        }
        self.0 = table(self.0, bytes);
    }

    pub(super) fn finish(self) -> u32 {
        !self.0
    }
}

/// CRC-32C of `bytes`.
pub(super) fn of(bytes: &[u8]) -> u32 {
    let mut c = Crc32c::default();
    c.update(bytes);
    c.finish()
}

fn table(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn hardware(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut crc = u64::from(crc);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut v = [0u8; 8];
        v.copy_from_slice(w);
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(v));
    }
    // The instruction keeps the CRC in the low 32 bits.
    let mut crc = crc as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The check value of CRC-32C, and RFC 3720's test patterns.
        assert_eq!(of(b"123456789"), 0xE306_9283);
        assert_eq!(of(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(of(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(of(&ascending), 0x46DD_794E);
        assert_eq!(of(b""), 0);
    }

    #[test]
    fn pieces_and_the_table_agree_with_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = of(&data);
        for cut in [0, 1, 7, 8, 9, 4095, 9999, 10_000] {
            let mut c = Crc32c::default();
            c.update(&data[..cut]);
            c.update(&data[cut..]);
            assert_eq!(c.finish(), whole, "cut at {cut}");
        }
        assert_eq!(!table(!0, &data), whole);
    }
}
