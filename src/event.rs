//! Writing JSON events fast: integers, hex and escaped strings without
//! `core::fmt` on the hot path, into a stack buffer that spills to the heap
//! when an event is too big for it (never cut: a cut line would not parse).
#![forbid(unsafe_code)]

use core::fmt;

/// The stack part of a `Buf`: room for every call event but those with
/// long strings (an `ftok` path, a diagnostic).
const STACK: usize = 512;

/// An event being written: in a 512-byte stack buffer, spilling to the heap
/// (grown with `try_reserve`, fail open) when it does not fit. One concrete
/// type, so every small write inlines.
pub struct Buf {
    stack: [u8; STACK],
    len: usize,
    heap: Vec<u8>,
    spilled: bool,
    failed: bool,
}

impl Default for Buf {
    fn default() -> Self {
        Self::new()
    }
}

impl Buf {
    pub fn new() -> Self {
        Self {
            stack: [0; STACK],
            len: 0,
            heap: Vec::new(),
            spilled: false,
            failed: false,
        }
    }

    /// The text, or `None` if memory ran out.
    pub fn bytes(&self) -> Option<&[u8]> {
        match (self.failed, self.spilled) {
            (true, _) => None,
            (false, false) => Some(&self.stack[..self.len]),
            (false, true) => Some(&self.heap),
        }
    }

    /// Appends bytes (already valid JSON text). Inlined: most pieces are
    /// constants, whose copy becomes a few moves.
    #[inline(always)]
    pub fn raw(&mut self, s: &[u8]) {
        let end = self.len + s.len();
        if !self.spilled && end <= STACK {
            self.stack[self.len..end].copy_from_slice(s);
            self.len = end;
        } else {
            self.raw_slow(s);
        }
    }

    #[cold]
    #[inline(never)]
    fn raw_slow(&mut self, s: &[u8]) {
        if !self.spilled {
            self.spill();
        }
        if self.heap.try_reserve(s.len()).is_ok() {
            self.heap.extend_from_slice(s);
        } else {
            self.failed = true;
        }
    }

    #[cold]
    fn spill(&mut self) {
        self.spilled = true;
        if self.heap.try_reserve(self.len + 4096).is_ok() {
            self.heap.extend_from_slice(&self.stack[..self.len]);
        } else {
            self.failed = true;
        }
    }

    /// `n` more bytes of the stack buffer, to be filled by the caller, or
    /// `None` when they do not fit (the caller then goes through `raw`).
    #[inline(always)]
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        let end = self.len + n;
        if self.spilled || end > STACK {
            return None;
        }
        let start = self.len;
        self.len = end;
        Some(&mut self.stack[start..end])
    }

    /// Appends the first `len` bytes of `block`. Copies the whole block
    /// when there is room (a fixed-size copy is a few vector moves, a
    /// variable one a call to memcpy) and counts only `len` of it.
    #[inline(always)]
    pub fn block<const N: usize>(&mut self, block: &[u8; N], len: usize) {
        let len = len.min(N);
        if !self.spilled && self.len + N <= STACK {
            self.stack[self.len..self.len + N].copy_from_slice(block);
            self.len += len;
        } else {
            self.raw(&block[..len]);
        }
    }

    /// Appends `n` as exactly `digits` decimal digits, with leading zeros
    /// (`n` < 10^`digits`, `digits` <= 20).
    #[inline]
    pub fn fixed(&mut self, digits: usize, n: u64) {
        let digits = digits.min(20);
        match self.room(digits) {
            Some(dst) => write_dec(dst, n),
            None => {
                let mut tmp = [0u8; 20];
                write_dec(&mut tmp[..digits], n);
                self.raw(&tmp[..digits]);
            }
        }
    }

    /// Appends a decimal number, written in place: two digits per division,
    /// as itoa does.
    pub fn dec(&mut self, n: u64) {
        self.fixed(decimal_digits(n), n);
    }

    /// Appends a signed decimal number.
    #[inline]
    pub fn int(&mut self, n: i64) {
        if n < 0 {
            self.raw(b"-");
        }
        self.dec(n.unsigned_abs());
    }

    /// Appends `0x` and `n` in lowercase hex, at least `width` digits
    /// (`width` <= 16).
    pub fn hex(&mut self, n: u64, width: usize) {
        let significant = (64 - n.leading_zeros() as usize).div_ceil(4);
        let digits = significant.max(width).clamp(1, 16);
        match self.room(digits + 2) {
            Some(dst) => write_hex(dst, n),
            None => {
                let mut tmp = [0u8; 18];
                write_hex(&mut tmp[..digits + 2], n);
                self.raw(&tmp[..digits + 2]);
            }
        }
    }

    /// Appends `bytes` as a JSON string: quoted, escaped, invalid UTF-8
    /// replaced by U+FFFD.
    pub fn string(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.raw(b"\"");
        for chunk in bytes.utf8_chunks() {
            let valid = chunk.valid().as_bytes();
            let mut start = 0;
            for (i, &b) in valid.iter().enumerate() {
                let escaped: &[u8] = match b {
                    b'"' => b"\\\"",
                    b'\\' => b"\\\\",
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    b'\t' => b"\\t",
                    0..=0x1f => &[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ],
                    _ => continue,
                };
                self.raw(&valid[start..i]);
                self.raw(escaped);
                start = i + 1;
            }
            self.raw(&valid[start..]);
            if !chunk.invalid().is_empty() {
                self.raw("\u{fffd}".as_bytes());
            }
        }
        self.raw(b"\"");
    }

    /// Appends an address as a JSON string, or `null` for 0.
    pub fn addr(&mut self, a: usize) {
        if a == 0 {
            self.raw(b"null");
        } else {
            self.raw(b"\"");
            self.hex(a as u64, 1);
            self.raw(b"\"");
        }
    }
}

/// The number of decimal digits of `n` (1 for 0).
#[inline(always)]
fn decimal_digits(n: u64) -> usize {
    // Powers of ten, and a first guess from the bit length (log10(2) is
    // about 1233 / 4096), corrected by one comparison.
    const POW10: [u64; 20] = {
        let mut t = [1u64; 20];
        let mut i = 1;
        while i < 20 {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };
    let bits = 64 - (n | 1).leading_zeros() as usize;
    let guess = (bits * 1233) >> 12;
    guess + usize::from((n | 1) >= POW10[guess])
}

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                            2021222324252627282930313233343536373839\
                            4041424344454647484950515253545556575859\
                            6061626364656667686970717273747576777879\
                            8081828384858687888990919293949596979899";

/// Writes `n` in decimal into `dst`, whose length is its number of
/// digits: 8 digits per 64-bit division until the rest fits 32 bits.
#[inline(always)]
fn write_dec(dst: &mut [u8], mut n: u64) {
    let mut end = dst.len();
    while u32::try_from(n).is_err() {
        let low = (n % 100_000_000) as u32;
        n /= 100_000_000;
        write_u32(&mut dst[end - 8..end], low);
        end -= 8;
    }
    write_u32(&mut dst[..end], n as u32);
}

/// Writes `n` (< 10^dst.len()) into `dst`, with leading zeros to fill it:
/// two digits per 32-bit division, as itoa does.
#[inline(always)]
fn write_u32(dst: &mut [u8], mut n: u32) {
    let (head, pairs) = dst.split_at_mut(dst.len() % 2);
    for pair in pairs.rchunks_exact_mut(2) {
        let p = (n % 100) as usize * 2;
        n /= 100;
        pair.copy_from_slice(&PAIRS[p..p + 2]);
    }
    if let [digit] = head {
        *digit = b'0' + n as u8;
    }
}

/// Writes `0x` and the low `dst.len() - 2` hex digits of `n` into `dst`.
#[inline(always)]
fn write_hex(dst: &mut [u8], n: u64) {
    let digits = dst.len() - 2;
    let mut all = [0u8; 16];
    all[..8].copy_from_slice(&hex8((n >> 32) as u32));
    all[8..].copy_from_slice(&hex8(n as u32));
    dst[0] = b'0';
    dst[1] = b'x';
    dst[2..].copy_from_slice(&all[16 - digits..]);
}

/// The 8 lowercase hex digits of `x`, without a loop: each nibble is
/// spread into a byte of its own, then made ASCII ('0'-'9' or 'a'-'f').
#[inline(always)]
fn hex8(x: u32) -> [u8; 8] {
    let x = u64::from(x);
    let v = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let v = ((v & 0x0000_ff00_0000_ff00) << 8) | (v & 0x0000_00ff_0000_00ff);
    let v = ((v & 0x00f0_00f0_00f0_00f0) << 4) | (v & 0x000f_000f_000f_000f);
    // 1 in each byte whose nibble is 10 or more.
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_be_bytes()
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.raw(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl Fn(&mut Buf)) -> String {
        let mut b = Buf::new();
        f(&mut b);
        String::from_utf8(b.bytes().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(text(|o| o.dec(0)), "0");
        assert_eq!(text(|o| o.dec(u64::MAX)), "18446744073709551615");
        for n in [
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            12345,
            1_795_856_215_987_783_458,
        ] {
            assert_eq!(text(|o| o.dec(n)), n.to_string());
        }
        // Every number of digits, at both ends.
        let mut p = 1u64;
        for _ in 0..20 {
            for n in [p - 1, p, p.saturating_add(1), p.saturating_mul(7)] {
                assert_eq!(text(|o| o.dec(n)), n.to_string());
            }
            p = p.saturating_mul(10);
        }
        assert_eq!(text(|o| o.int(-1)), "-1");
        assert_eq!(text(|o| o.int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(|o| o.hex(0, 1)), "0x0");
        assert_eq!(text(|o| o.hex(0x1234, 8)), "0x00001234");
        assert_eq!(text(|o| o.hex(u64::MAX, 8)), "0xffffffffffffffff");
        for shift in 0..64 {
            let n = 1u64 << shift;
            assert_eq!(text(|o| o.hex(n, 1)), format!("{n:#x}"));
            assert_eq!(text(|o| o.hex(n - 1, 4)), format!("0x{:04x}", n - 1));
        }
        for n in [
            0u64,
            9,
            10,
            0xa5,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
        ] {
            assert_eq!(text(|o| o.hex(n, 16)), format!("0x{n:016x}"));
        }
        assert_eq!(text(|o| o.fixed(9, 5)), "000000005");
        assert_eq!(text(|o| o.fixed(9, 999_999_999)), "999999999");
        assert_eq!(text(|o| o.block(b"abcdefgh", 3)), "abc");
        // Numbers written after the stack buffer has spilled.
        let out = text(|o| {
            o.raw(&[b'x'; 510]);
            o.dec(123_456);
            o.hex(0xabc, 8);
            o.fixed(3, 7);
            o.block(b"xyz.", 3);
        });
        assert_eq!(&out[510..], "1234560x00000abc007xyz");
        assert_eq!(text(|o| o.addr(0)), "null");
        assert_eq!(text(|o| o.addr(0x7f00)), "\"0x7f00\"");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(text(|o| o.string(b"plain")), "\"plain\"");
        assert_eq!(
            text(|o| o.string(b"a\"b\\c\nd\x01\x1f\xff")),
            "\"a\\\"b\\\\c\\nd\\u0001\\u001f\u{fffd}\""
        );
    }

    #[test]
    fn big_events_go_to_the_heap_whole() {
        let long = vec![b'x'; 5000];
        let out = text(|o| o.string(&long));
        assert_eq!(out.len(), 5002);
    }

    #[test]
    fn agrees_with_serde_style_escaping_for_every_byte() {
        for b in 0u8..0x80 {
            let s = text(|o| o.string(&[b]));
            let expected = match b {
                b'"' => "\"\\\"\"".to_owned(),
                b'\\' => "\"\\\\\"".to_owned(),
                b'\n' => "\"\\n\"".to_owned(),
                b'\r' => "\"\\r\"".to_owned(),
                b'\t' => "\"\\t\"".to_owned(),
                0..=0x1f => format!("\"\\u{b:04x}\""),
                _ => format!("\"{}\"", b as char),
            };
            assert_eq!(s, expected, "byte {b:#x}");
        }
    }
}
