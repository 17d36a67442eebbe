//! XML re-indented by two spaces per level (`quick-xml`). Elements nested deeper than the
//! budget's limit are refused; XML that does not parse before the output is full is given back
//! as it is.

use super::budget::{Budget, Stop};
use super::capped::Capped;
use quick_xml::events::Event;

/// Writes `text` re-indented into `out`; `Ok(false)` (nothing written) when it does not parse.
pub fn pretty_xml(text: &str, out: &mut Capped, budget: &mut Budget) -> Result<bool, Stop> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    let mut depth = 0usize;
    let mut read = 0u64;
    let room = out.room();
    loop {
        let event = match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(e) => e,
            Err(_) => return Ok(false),
        };
        let at = reader.buffer_position();
        budget.spend(usize::try_from(at.saturating_sub(read)).unwrap_or(usize::MAX))?;
        read = at;
        match &event {
            Event::Start(_) => {
                depth += 1;
                budget.enter(depth)?;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        if writer.write_event(event).is_err() {
            return Ok(false);
        }
        if writer.get_mut().len() > room {
            // Full: what was written so far, cut at the cap.
            break;
        }
    }
    match String::from_utf8(writer.into_inner()) {
        Ok(s) => out.push_str(&s).map(|()| true),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretty(text: &str, max: usize) -> Result<Option<(String, bool)>, Stop> {
        let mut out = Capped::new(max);
        match pretty_xml(text, &mut out, &mut Budget::unlimited()) {
            Ok(true) => Ok(Some(out.finish())),
            Ok(false) => Ok(None),
            Err(Stop::Full) => Ok(Some(out.finish())),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn reindents() {
        let x = pretty("<?xml version=\"1.0\"?><a><b x=\"1\">t</b><c/></a>", 1000).unwrap();
        assert_eq!(
            x,
            Some((
                "<?xml version=\"1.0\"?>\n<a>\n  <b x=\"1\">t</b>\n  <c/>\n</a>".to_string(),
                false
            ))
        );
        assert_eq!(pretty("<a><b></a>", 1000), Ok(None));
        let (t, cut) = pretty(&"<a>x</a>".repeat(1000), 100).unwrap().unwrap();
        assert!(
            cut && t.len() == 100 && t.starts_with("<a>x</a>\n<a>"),
            "{t}"
        );
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}{}", "<a>".repeat(128), "</a>".repeat(128));
        assert!(pretty(&ok, 1 << 20).unwrap().is_some());
        let deep = format!("{}{}", "<a>".repeat(129), "</a>".repeat(129));
        assert_eq!(pretty(&deep, 1 << 20), Err(Stop::TooDeep));
        assert_eq!(pretty(&"<a>".repeat(100_000), 1 << 20), Err(Stop::TooDeep));
    }
}
