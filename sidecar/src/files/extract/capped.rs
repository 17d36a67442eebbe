//! The text an extraction produces, never longer than its cap: the first write that does not
//! fit is cut on a character boundary and answers [`Stop::Full`], which ends the extraction.

use super::budget::Stop;

/// Output text with a byte cap.
#[derive(Debug)]
pub struct Capped {
    text: String,
    max: usize,
    full: bool,
}

/// Bytes reserved up front (more grows as needed, up to the cap).
const INITIAL_CAPACITY: usize = 64 * 1024;

impl Capped {
    /// Empty output that holds at most `max` bytes.
    pub fn new(max: usize) -> Capped {
        Capped {
            text: String::with_capacity(max.min(INITIAL_CAPACITY)),
            max,
            full: false,
        }
    }

    /// Appends `s`, or as much of it as fits (then [`Stop::Full`]).
    pub fn push_str(&mut self, s: &str) -> Result<(), Stop> {
        let room = self.room();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        self.text.push_str(prefix(s, room));
        self.full = true;
        Err(Stop::Full)
    }

    /// Appends one character (or nothing and [`Stop::Full`]).
    pub fn push(&mut self, c: char) -> Result<(), Stop> {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf))
    }

    /// Bytes that still fit.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.text.len())
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text and whether it was cut.
    pub fn finish(self) -> (String, bool) {
        (self.text, self.full)
    }
}

/// The longest start of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Cuts `text` to at most `max` bytes on a character boundary; whether it was cut.
pub fn cap(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let end = prefix(&text, max).len();
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary() {
        let mut c = Capped::new(5);
        assert_eq!(c.push_str("ab"), Ok(()));
        assert_eq!(c.push_str("cé"), Ok(()));
        assert_eq!(c.push('€'), Err(Stop::Full));
        assert_eq!(c.finish(), ("abcé".to_string(), true));
        let mut c = Capped::new(3);
        assert_eq!(c.push_str("abc"), Ok(()));
        assert_eq!(c.push_str(""), Ok(()));
        assert_eq!(c.push_str("d"), Err(Stop::Full));
        assert_eq!(cap("ééé".into(), 3), ("é".into(), true));
        assert_eq!(cap("abc".into(), 3), ("abc".into(), false));
    }
}
