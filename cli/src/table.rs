//! Plain-text tables and human-readable quantities.
#![forbid(unsafe_code)]

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Words.
    Left,
    /// Numbers (and quantities such as `4.0K`, `3h`).
    Right,
}

/// Renders a table with a header row, each column aligned as `align` says
/// (its header too), two spaces apart; no line ends in spaces.
///
/// Written by hand rather than with comfy-table or tabled: the tables are
/// plain columns as `ipcs` and `ps` print them (no borders, no wrapping,
/// the last column unpadded), which is these few lines, and the output is
/// kept byte for byte by golden tests.
pub fn render<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    align: &[Align; N],
) -> String {
    let mut width = [0usize; N];
    for (i, h) in header.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(cell.chars().count());
            if align[i] == Align::Right {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < N {
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A size as `ls -h` prints it: `512B`, `4.0K`, `1.5M`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 10.0 {
        format!("{:.0}{}", value, UNITS[unit])
    } else {
        format!("{:.1}{}", value, UNITS[unit])
    }
}

/// An age in its largest whole unit: `45s`, `12m`, `3h`, `2d`.
pub fn human_age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// A duration exactly, in days, hours, minutes and seconds (`1h30m`,
/// `2d`, `0s`): what `--older-than` was given, not rounded as an age is.
pub fn exact_duration(secs: u64) -> String {
    let mut out = String::new();
    let mut rest = secs;
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        let n = rest / len;
        rest %= len;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The longest `--older-than`: ages are seconds in an `i64`, and a longer
/// duration would wrap around when compared with one.
pub const MAX_DURATION_SECS: u64 = i64::MAX as u64;

/// Parses a duration with humantime: a number and a unit, `30s`, `10m`,
/// `2h`, `7d`, `2w`, or several (`1h30m`, `1h 30m`); a bare number is
/// seconds.
/// Durations longer than [`MAX_DURATION_SECS`] (or that overflow while
/// parsing) are errors, never wrapped.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("'{text}' is too long (at most {MAX_DURATION_SECS} seconds)"))
    } else {
        humantime::parse_duration(text).map_err(|e| {
            format!("'{text}' is not a duration ({e}; use 30s, 10m, 2h, 7d or 1h 30m)")
        })
    }?;
    let secs = parsed.as_secs();
    if secs > MAX_DURATION_SECS {
        return Err(format!(
            "'{text}' is too long (at most {MAX_DURATION_SECS} seconds)"
        ));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(4096), "4.0K");
        assert_eq!(human_size(1536 * 1024), "1.5M");
        assert_eq!(human_size(64 << 20), "64M");
        assert_eq!(human_size(3 << 30), "3.0G");
    }

    #[test]
    fn ages_and_durations() {
        assert_eq!(human_age(45), "45s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(7200), "2h");
        assert_eq!(human_age(86400 * 7), "7d");
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("7d"), Ok(604800));
        assert_eq!(parse_duration("15"), Ok(15));
        assert_eq!(parse_duration("1w"), Ok(604800));
        assert_eq!(parse_duration("1h 30m"), Ok(5400));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2h15m30s"), Ok(8130));
        assert_eq!(exact_duration(5400), "1h30m");
        assert_eq!(exact_duration(8130), "2h15m30s");
        assert_eq!(exact_duration(3600), "1h");
        assert_eq!(exact_duration(86400 + 1), "1d1s");
        assert_eq!(exact_duration(0), "0s");
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("m").is_err());
        // Out of range: an error, never a wrapped value.
        for long in [
            "213503982334601d",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808s",
            "106751991167301d",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(long).is_err(), "{long}");
        }
        assert_eq!(parse_duration("9223372036854775807"), Ok(i64::MAX as u64));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn tables_align() {
        let t = render(
            &["ID", "NAME", "SIZE"],
            &[
                ["1".into(), "a".into(), "4.0K".into()],
                ["100".into(), "bb".into(), "64M".into()],
            ],
            &[Align::Right, Align::Left, Align::Right],
        );
        assert_eq!(t, " ID  NAME  SIZE\n  1  a     4.0K\n100  bb     64M\n");
    }
}
