//! The proxy-wasm ABI's serialized header-map layout, kept here so it is unit-tested natively.
//!
//! Layout: `u32` pair count, then per pair `u32` name length and `u32` value length, then
//! per pair the name bytes, a NUL, the value bytes and a NUL (all integers little-endian).

/// Serializes header pairs.
pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut size = 4;
    for (n, v) in pairs {
        size += n.len() + v.len() + 10;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len32(pairs.len()).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&len32(n.len()).to_le_bytes());
        out.extend_from_slice(&len32(v.len()).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let arr: [u8; 4] = b.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(arr)).ok()
}

/// Deserializes header pairs; `None` on a malformed buffer.
pub fn deserialize(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)?;
    // Each pair needs at least 10 bytes; reject absurd counts before allocating.
    if count > bytes.len() / 8 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let base = 4 + i * 8;
        sizes.push((read_u32(bytes, base)?, read_u32(bytes, base + 4)?));
    }
    let mut pos = 4 + count * 8;
    let mut out = Vec::with_capacity(count);
    for (nlen, vlen) in sizes {
        let name = bytes.get(pos..pos.checked_add(nlen)?)?;
        pos = pos.checked_add(nlen)?.checked_add(1)?;
        let value = bytes.get(pos..pos.checked_add(vlen)?)?;
        pos = pos.checked_add(vlen)?.checked_add(1)?;
        out.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs: Vec<(&str, &[u8])> = vec![(":path", b"/v1/models"), ("x", b"")];
        let bytes = serialize(&pairs);
        let back = deserialize(&bytes).unwrap();
        assert_eq!(back[0], (":path".to_string(), b"/v1/models".to_vec()));
        assert_eq!(back[1], ("x".to_string(), Vec::new()));
    }

    #[test]
    fn malformed_is_none() {
        assert!(deserialize(&[1, 0, 0, 0]).is_none());
        assert!(deserialize(&[255, 255, 255, 255, 0, 0]).is_none());
        let mut bytes = serialize(&[("a", b"b")]);
        bytes.truncate(bytes.len() - 2);
        assert!(deserialize(&bytes).is_none());
        assert_eq!(deserialize(&[]).unwrap(), Vec::new());
    }
}
