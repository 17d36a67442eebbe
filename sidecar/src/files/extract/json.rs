//! JSON re-indented by two spaces per level (`serde_json`'s pretty layout), token by token, so
//! cut or invalid JSON still comes out readable. Nesting deeper than the budget's limit is
//! refused: the indentation, and so the output per input byte, stays bounded.

use super::budget::{Budget, Stop};
use super::capped::Capped;

/// Writes `text` re-indented into `out`.
pub fn pretty_json(text: &str, out: &mut Capped, budget: &mut Budget) -> Result<(), Stop> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        budget.spend(1)?;
        if in_string {
            out.push(c)?;
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c)?;
            }
            '{' | '[' => {
                out.push(c)?;
                // Empty containers stay on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    budget.spend(1)?;
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close)?;
                } else {
                    depth += 1;
                    budget.enter(depth)?;
                    newline(out, depth)?;
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(out, depth)?;
                out.push(c)?;
            }
            ',' => {
                out.push(',')?;
                newline(out, depth)?;
            }
            ':' => out.push_str(": ")?,
            c if c.is_whitespace() => {}
            c => out.push(c)?,
        }
    }
    Ok(())
}

/// A line break and the indentation of `depth`.
fn newline(out: &mut Capped, depth: usize) -> Result<(), Stop> {
    out.push('\n')?;
    for _ in 0..depth {
        out.push_str("  ")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretty(text: &str) -> Result<String, Stop> {
        let mut out = Capped::new(1 << 20);
        pretty_json(text, &mut out, &mut Budget::unlimited())?;
        Ok(out.finish().0)
    }

    #[test]
    fn matches_serde_pretty() {
        let src = r#"{"a":[1,2,{"b":"x,y:{}"}],"e":{},"f":[ ],"g":"q\"}"}"#;
        let v: serde_json::Value = serde_json::from_str(src).unwrap();
        assert_eq!(
            pretty(src).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
        // Cut JSON still comes out.
        assert_eq!(pretty("{\"a\":[1,").unwrap(), "{\n  \"a\": [\n    1,\n    ");
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let v: serde_json::Value = serde_json::from_str(&ok).unwrap();
        assert_eq!(
            pretty(&ok).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
        assert!(pretty(&format!("{}1{}", "[".repeat(128), "]".repeat(128))).is_ok());
        assert_eq!(pretty(&"[".repeat(129)), Err(Stop::TooDeep));
        assert_eq!(pretty(&"{\"a\":".repeat(20_000)), Err(Stop::TooDeep));
        // Empty containers do not nest.
        assert!(pretty(&"[],".repeat(10_000)).is_ok());
    }
}
