//! Names the traced system chooses — process names (`comm`, any 15 bytes
//! set with `prctl(PR_SET_NAME)`), executed filenames, interface and cgroup
//! names, host names — and how snoop shows them. They are attacker-chosen
//! and end up in front of an operator, often root, so they get one set of
//! rules, kept here because both the analyzer and the recorder's `top` use
//! them:
//!
//! - [`name_text`]: the *lossless* text of a name's bytes, used everywhere a
//!   name becomes a string (JSON, Parquet, CSV, and the input of the text
//!   outputs). Valid UTF-8 stays as it is except that a backslash is
//!   doubled (`\` becomes `\\`); each byte that is not part of valid UTF-8
//!   becomes the four characters `\xNN` (lowercase hex). The rule is
//!   reversible ([`name_text_bytes`]), so a consumer can get the exact
//!   bytes back; a name that is valid UTF-8 without a backslash (nearly
//!   all of them) is its exact text.
//! - [`shown`] / [`Shown`]: text safe for a terminal, applied by every
//!   human-facing output. Control characters (C0, DEL, C1), line and
//!   paragraph separators and bidirectional overrides are shown as the
//!   `\xNN` escapes of their UTF-8 bytes (`\n`, `\t` and `\r` by name), the
//!   way `ps` and `ls -b` do, so a name can neither repaint the terminal nor
//!   start a new line; [`width`] measures the result in terminal columns
//!   (wide characters count two) so tables pad by display width.
//! - [`csv_cell`]: the OWASP CSV-injection rule for text cells.

use std::borrow::Cow;
use std::fmt;

use unicode_width::UnicodeWidthStr;

/// The lossless text of a name's bytes (see the module docs): valid UTF-8
/// kept, `\` doubled, every byte outside valid UTF-8 written `\xNN`.
pub fn name_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            push_hex(&mut out, *b);
        }
    }
    out
}

/// The bytes a [`name_text`] string stands for, or `None` when `text` is
/// not something [`name_text`] writes (a lone backslash, a bad escape).
pub fn name_text_bytes(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let esc = &rest[i..];
        if let Some(after) = esc.strip_prefix("\\\\") {
            out.push(b'\\');
            rest = after;
        } else if esc.len() >= 4
            && esc.as_bytes()[1] == b'x'
            && esc.as_bytes()[2..4].iter().all(u8::is_ascii_hexdigit)
        {
            out.push(u8::from_str_radix(&esc[2..4], 16).ok()?);
            rest = &esc[4..];
        } else {
            return None;
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Some(out)
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Whether a character must not reach a terminal as is: C0 controls, DEL,
/// C1 controls, line/paragraph separators, and the bidirectional marks,
/// embeddings, overrides and isolates (which reorder the rest of a line).
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// Text made safe for a terminal or a one-line-per-record output (see the
/// module docs). Borrowed when nothing needed escaping.
pub fn shown(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_hex(&mut out, b);
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Columns a string takes on a terminal (wide characters two, combining
/// marks none). Meant for text that went through [`shown`].
pub fn width(s: &str) -> usize {
    s.width()
}

/// The [`width`] of `s` once [`shown`]: the columns a [`Shown`] takes.
pub fn shown_width(s: &str) -> usize {
    width(&shown(s))
}

/// A string shown through [`shown`] by `Display`, padded by display width:
/// `format!("{:<16}", Shown(name))` keeps a column aligned whatever the
/// name holds (the width and alignment of the format spec are honoured; a
/// name wider than the width is printed whole, never cut).
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = shown(self.0);
        let pad = f.width().map_or(0, |w| w.saturating_sub(width(&s)));
        let (left, right) = match f.align() {
            Some(fmt::Alignment::Right) => (pad, 0),
            Some(fmt::Alignment::Center) => (pad / 2, pad - pad / 2),
            _ => (0, pad),
        };
        let fill = f.fill();
        for _ in 0..left {
            fmt::Write::write_char(f, fill)?;
        }
        f.write_str(&s)?;
        for _ in 0..right {
            fmt::Write::write_char(f, fill)?;
        }
        Ok(())
    }
}

/// A text cell for CSV a spreadsheet may open: a cell starting with `=`,
/// `+`, `-`, `@`, tab or carriage return (which spreadsheets read as a
/// formula) gets a leading `'` (the OWASP CSV-injection rule). Quoting of
/// separators, quotes and line breaks is the CSV writer's job.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_text_round_trips_every_hostile_class() {
        let cases: &[&[u8]] = &[
            b"\x1b[31mRED\x1b[0m",
            b"a\nb\tc",
            b"<svg/onload=a>&",
            b"=cmd|' /C calc",
            b"ok\xff\xfe",
            b"back\\slash\\x41",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}x".as_bytes(),
            b"\xc3",
            b"",
        ];
        for &c in cases {
            let t = name_text(c);
            assert_eq!(name_text_bytes(&t).as_deref(), Some(c), "{t:?}");
        }
        assert_eq!(name_text(b"ok\xff\xfe"), "ok\\xff\\xfe");
        assert_eq!(name_text(b"a\\b"), "a\\\\b");
        assert_eq!(name_text(b"\x1b[0m"), "\x1b[0m");
        // The text of an invalid name and of a valid name spelling out the
        // escape differ, so the rule is injective.
        assert_ne!(name_text(b"\xff"), name_text(b"\\xff"));
        assert_eq!(name_text_bytes("\\"), None);
        assert_eq!(name_text_bytes("\\xZZ"), None);
        assert_eq!(name_text_bytes("\\x+f"), None);
    }

    #[test]
    fn shown_escapes_controls_and_keeps_the_rest() {
        assert_eq!(shown("\x1b[31mRED\x1b[0m"), "\\x1b[31mRED\\x1b[0m");
        assert_eq!(shown("a\nb\tc\rd\x7f"), "a\\nb\\tc\\rd\\x7f");
        assert_eq!(shown("c1\u{9b}"), "c1\\xc2\\x9b");
        assert_eq!(shown("rtl\u{202e}"), "rtl\\xe2\\x80\\xae");
        assert!(matches!(
            shown("plain <&> \u{e9}\u{4e2d}"),
            Cow::Borrowed(_)
        ));
        // Backslashes are left as the lossless text wrote them.
        assert_eq!(shown("a\\\\b\\xff"), "a\\\\b\\xff");
    }

    #[test]
    fn shown_pads_by_display_width() {
        assert_eq!(
            format!("[{:<6}]", Shown("\u{4e2d}\u{6587}")),
            "[\u{4e2d}\u{6587}  ]"
        );
        assert_eq!(format!("[{:>5}]", Shown("a\tb")), "[ a\\tb]");
        assert_eq!(format!("[{:<2}]", Shown("long")), "[long]");
        assert_eq!(width("\u{4e2d}e\u{301}"), 3);
    }

    #[test]
    fn csv_cells_that_start_a_formula_are_neutralised() {
        for s in ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(s), format!("'{s}"));
        }
        for s in ["cmd", "", "1=1", "'=x"] {
            assert!(matches!(csv_cell(s), Cow::Borrowed(_)), "{s}");
        }
    }
}
