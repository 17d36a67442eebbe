//! HTML character references: `&name;` (the common names), `&#123;` and `&#x1F600;`.

use super::capped::prefix;

/// Named entities decoded (the common ones; numeric ones all).
const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", ' '),
    ("copy", '©'),
    ("reg", '®'),
    ("trade", '™'),
    ("hellip", '…'),
    ("mdash", '—'),
    ("ndash", '–'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("laquo", '«'),
    ("raquo", '»'),
    ("bull", '•'),
    ("middot", '·'),
    ("euro", '€'),
    ("pound", '£'),
    ("yen", '¥'),
    ("cent", '¢'),
    ("sect", '§'),
    ("para", '¶'),
    ("deg", '°'),
    ("plusmn", '±'),
    ("times", '×'),
    ("divide", '÷'),
    ("frac12", '½'),
    ("frac14", '¼'),
    ("frac34", '¾'),
    ("micro", 'µ'),
    ("shy", '\u{AD}'),
    ("larr", '←'),
    ("rarr", '→'),
    ("uarr", '↑'),
    ("darr", '↓'),
    ("le", '≤'),
    ("ge", '≥'),
    ("ne", '≠'),
    ("iexcl", '¡'),
    ("iquest", '¿'),
    ("szlig", 'ß'),
    ("auml", 'ä'),
    ("ouml", 'ö'),
    ("uuml", 'ü'),
    ("Auml", 'Ä'),
    ("Ouml", 'Ö'),
    ("Uuml", 'Ü'),
    ("eacute", 'é'),
    ("egrave", 'è'),
    ("ecirc", 'ê'),
    ("aacute", 'á'),
    ("agrave", 'à'),
    ("acirc", 'â'),
    ("iacute", 'í'),
    ("oacute", 'ó'),
    ("uacute", 'ú'),
    ("ntilde", 'ñ'),
    ("ccedil", 'ç'),
    ("Eacute", 'É'),
    ("Ntilde", 'Ñ'),
    ("Ccedil", 'Ç'),
];

/// The character of the reference at the start of `s` (which starts with `&`) and the bytes it
/// takes; `None` when it is not one (it is then kept as written).
pub fn entity_at(s: &str) -> Option<(char, usize)> {
    let window = prefix(s, 34);
    let semi = window.get(1..)?.find(';')? + 1;
    let name = s.get(1..semi)?;
    let c = if let Some(num) = name.strip_prefix('#') {
        let n = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER)
    } else {
        ENTITIES.iter().find(|(n, _)| *n == name)?.1
    };
    Some((c, semi + 1))
}

/// `s` with its references decoded (unknown ones kept as written).
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        rest = rest.get(amp..).unwrap_or("");
        match entity_at(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = rest.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = rest.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            decode_entities("a &amp; &lt;b&gt; &#233;&#x20AC; &unknown; &"),
            "a & <b> é€ &unknown; &"
        );
        assert_eq!(entity_at("&nbsp;x"), Some((' ', 6)));
        assert_eq!(entity_at("&#xD800;"), Some(('\u{FFFD}', 8)));
        assert_eq!(entity_at("&amp"), None);
        // The window is cut on a character boundary.
        assert_eq!(entity_at(&format!("&{};", "é".repeat(20))), None);
    }
}
