//! Bytes to text: UTF-8 (BOM dropped), UTF-16 LE/BE with a BOM, anything else Latin-1 (never
//! an error). Valid UTF-8, the common case, is borrowed, not copied.

use std::borrow::Cow;

/// Decodes `data`; `cut`: the data may end inside a character, which is then dropped.
pub fn decode_text(data: &[u8], cut: bool) -> Cow<'_, str> {
    if let Some(rest) = data.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8_lossy_tail(rest, cut);
    }
    if let Some(rest) = data.strip_prefix(&[0xFF, 0xFE]) {
        return Cow::Owned(utf16(rest, u16::from_le_bytes));
    }
    if let Some(rest) = data.strip_prefix(&[0xFE, 0xFF]) {
        return Cow::Owned(utf16(rest, u16::from_be_bytes));
    }
    match utf8(data, cut) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(data.iter().map(|&b| char::from(b)).collect()),
    }
}

/// The start of `data` decoded as [`decode_text`] decodes all of it (the charset is decided
/// on all of it), with at least `max` bytes of text when there are that many: what a text cut
/// at `max` needs, without decoding megabytes to keep kilobytes.
pub fn decode_prefix(data: &[u8], cut: bool, max: usize) -> Cow<'_, str> {
    // Each input byte gives at least one byte of text, except in UTF-16 (two give one or
    // more); four more cover a character split at the end.
    let need = max.saturating_add(4).saturating_mul(2);
    if data.len() <= need.saturating_add(3) {
        return decode_text(data, cut);
    }
    if let Some(rest) = data.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8_lossy_tail(head(rest, need), true);
    }
    if let Some(rest) = data.strip_prefix(&[0xFF, 0xFE]) {
        return Cow::Owned(utf16(head(rest, need), u16::from_le_bytes));
    }
    if let Some(rest) = data.strip_prefix(&[0xFE, 0xFF]) {
        return Cow::Owned(utf16(head(rest, need), u16::from_be_bytes));
    }
    match utf8(data, cut) {
        Some(s) => Cow::Borrowed(super::capped::prefix(s, need)),
        None => Cow::Owned(head(data, need).iter().map(|&b| char::from(b)).collect()),
    }
}

/// The first `n` bytes of `d` (all of it when shorter).
fn head(d: &[u8], n: usize) -> &[u8] {
    d.get(..n).unwrap_or(d)
}

/// `data` as UTF-8 (an incomplete last character of a cut read dropped), or `None`.
fn utf8(data: &[u8], cut: bool) -> Option<&str> {
    match std::str::from_utf8(data) {
        Ok(s) => Some(s),
        Err(e) if cut && e.error_len().is_none() && data.len() - e.valid_up_to() < 4 => data
            .get(..e.valid_up_to())
            .and_then(|d| std::str::from_utf8(d).ok()),
        Err(_) => None,
    }
}

/// UTF-8 after a BOM: invalid sequences replaced, an incomplete tail dropped when cut.
fn utf8_lossy_tail(data: &[u8], cut: bool) -> Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(s) => Cow::Borrowed(s),
        Err(e) if cut && e.error_len().is_none() => data
            .get(..e.valid_up_to())
            .map_or(Cow::Borrowed(""), String::from_utf8_lossy),
        Err(_) => String::from_utf8_lossy(data),
    }
}

/// UTF-16 code units (an odd last byte is dropped), invalid surrogates replaced.
fn utf16(data: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = data.chunks_exact(2).map(|c| match c {
        [a, b] => unit([*a, *b]),
        _ => 0xFFFD,
    });
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets() {
        assert_eq!(decode_text("héllo".as_bytes(), false), "héllo");
        assert!(matches!(decode_text(b"abc", false), Cow::Borrowed(_)));
        assert_eq!(decode_text(b"\xEF\xBB\xBFabc", false), "abc");
        let utf16le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé€".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode_text(&utf16le, false), "hé€");
        let utf16be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode_text(&utf16be, false), "hé");
        // Latin-1: not UTF-8, read byte by byte.
        assert_eq!(decode_text(b"caf\xE9 cr\xE8me", false), "café crème");
        // A cut read ending inside a character.
        let s = "aé".as_bytes();
        assert_eq!(decode_text(&s[..2], true), "a");
        assert_eq!(decode_text(b"\xEF\xBB\xBFa\xC3", true), "a");
    }

    #[test]
    fn prefixes_decode_like_the_whole() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(
                "h\u{e9}\u{1F600}"
                    .repeat(100)
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        let texts: Vec<Vec<u8>> = vec![
            "h\u{e9}llo \u{20AC}".repeat(100).into_bytes(),
            // Latin-1: the invalid byte is at the end, the prefix still reads as Latin-1.
            [b"caf\xC3\xA9 ".repeat(100), vec![0xE9]].concat(),
            [
                vec![0xEF, 0xBB, 0xBF],
                "\u{e9}t\u{e9}".repeat(100).into_bytes(),
            ]
            .concat(),
            utf16,
        ];
        for data in texts {
            let whole = decode_text(&data, false);
            for max in [0, 1, 5, 17, 100, 1000] {
                let p = decode_prefix(&data, false, max);
                assert!(whole.starts_with(&*p), "{max}");
                assert!(
                    p.len() >= max.min(whole.len()),
                    "{max}: {} < {max}",
                    p.len()
                );
            }
        }
    }
}
