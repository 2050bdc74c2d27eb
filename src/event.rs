//! Writing JSON events fast: integers, hex and escaped strings without
//! `core::fmt` on the hot path, into a stack buffer that spills to the heap
//! when an event is too big for it (never cut: a cut line would not parse).
#![forbid(unsafe_code)]

use core::fmt;

/// An event being written: in a 512-byte stack buffer, spilling to the heap
/// (grown with `try_reserve`, fail open) when it does not fit. One concrete
/// type, so every small write inlines.
pub struct Buf {
    stack: [u8; 512],
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
            stack: [0; 512],
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

    /// Appends bytes (already valid JSON text).
    #[inline]
    pub fn raw(&mut self, s: &[u8]) {
        if !self.spilled {
            if let Some(dst) = self.stack.get_mut(self.len..self.len + s.len()) {
                // Most pieces are a few bytes: a loop beats a call to memcpy.
                if s.len() <= 24 {
                    for (d, &b) in dst.iter_mut().zip(s) {
                        *d = b;
                    }
                } else {
                    dst.copy_from_slice(s);
                }
                self.len += s.len();
                return;
            }
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

    /// Appends a decimal number (two digits per division, as itoa does).
    pub fn dec(&mut self, mut n: u64) {
        const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                                    2021222324252627282930313233343536373839\
                                    4041424344454647484950515253545556575859\
                                    6061626364656667686970717273747576777879\
                                    8081828384858687888990919293949596979899";
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            buf[i] = PAIRS[pair];
            buf[i + 1] = PAIRS[pair + 1];
        }
        if n >= 10 {
            let pair = n as usize * 2;
            i -= 2;
            buf[i] = PAIRS[pair];
            buf[i + 1] = PAIRS[pair + 1];
        } else {
            i -= 1;
            buf[i] = b'0' + n as u8;
        }
        self.raw(&buf[i..]);
    }

    /// Appends a signed decimal number.
    pub fn int(&mut self, n: i64) {
        if n < 0 {
            self.raw(b"-");
        }
        self.dec(n.unsigned_abs());
    }

    /// Appends `0x` and `n` in lowercase hex, at least `width` digits.
    pub fn hex(&mut self, n: u64, width: usize) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 18];
        let mut i = buf.len();
        let mut rest = n;
        while rest != 0 || buf.len() - i < width.max(1) {
            i -= 1;
            buf[i] = DIGITS[(rest & 15) as usize];
            rest >>= 4;
        }
        i -= 2;
        buf[i] = b'0';
        buf[i + 1] = b'x';
        self.raw(&buf[i..]);
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
        assert_eq!(text(|o| o.int(-1)), "-1");
        assert_eq!(text(|o| o.int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(|o| o.hex(0, 1)), "0x0");
        assert_eq!(text(|o| o.hex(0x1234, 8)), "0x00001234");
        assert_eq!(text(|o| o.hex(u64::MAX, 8)), "0xffffffffffffffff");
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
