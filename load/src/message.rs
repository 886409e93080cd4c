//! What the load generator publishes and how receivers read it back: every message's data is
//! `{"s":SEQ,"p":PUBLISHER,"t":SEND_TIME_US,"x":"padding"}`, so any receiver can compute the
//! end-to-end latency (one host, one clock) and account per stream.

use serde::Deserialize;

/// Microseconds since the Unix epoch (CLOCK_REALTIME: comparable across processes).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The publication data for message `seq` of `publisher`, padded to about `size` bytes.
pub fn data(seq: u64, publisher: u32, send_us: u64, size: usize) -> String {
    let mut data = format!("{{\"s\":{seq},\"p\":{publisher},\"t\":{send_us},\"x\":\"");
    let pad = size.saturating_sub(data.len() + 2);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// The stamp a received publication carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    pub s: u64,
    pub p: u32,
    pub t: u64,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    push: Option<PushBody<'a>>,
}

#[derive(Deserialize)]
struct PushBody<'a> {
    #[serde(borrow, rename = "pub", default)]
    publication: Option<Publication<'a>>,
}

#[derive(Deserialize)]
struct Publication<'a> {
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// What one line of a server message is, for the load generator.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A publication carrying a stamp.
    Stamped(Stamp),
    /// A publication from someone else (no stamp).
    Foreign,
    /// A server ping `{}` (answer with `{}`).
    Ping,
    /// A reply or another push.
    Other,
}

/// Classifies one line (a server message may hold several, newline-separated).
pub fn classify(line: &[u8]) -> Received {
    if line == b"{}" {
        return Received::Ping;
    }
    if let Some(stamp) = stamp_fast(line) {
        return Received::Stamped(stamp);
    }
    let Ok(parsed) = serde_json::from_slice::<Line<'_>>(line) else {
        return Received::Other;
    };
    match parsed.push.and_then(|p| p.publication) {
        Some(publication) => match serde_json::from_str::<Stamp>(publication.data.get()) {
            Ok(stamp) => Received::Stamped(stamp),
            Err(_) => Received::Foreign,
        },
        None => Received::Other,
    }
}

/// The stamp of a push laid out as ringcast writes it (`{"push":{...,"pub":{"data":{"s":..`),
/// read without parsing the whole line: the receivers' JSON parsing was most of the load
/// generator's CPU, and on a shared machine that CPU is taken from the server under test.
/// `None` for any other layout (the full parse decides then). Sound for valid JSON: inside a
/// string every `"` is escaped, so the unescaped `"pub":{"data":{"s":` marks the publication.
fn stamp_fast(line: &[u8]) -> Option<Stamp> {
    const PUSH: &[u8] = br#"{"push":{"#;
    const MARK: &[u8] = br#""pub":{"data":{"s":"#;
    if !line.starts_with(PUSH) {
        return None;
    }
    let at = memchr::memmem::find(line, MARK)? + MARK.len();
    let (s, rest) = leading_u64(&line[at..])?;
    let (p, rest) = leading_u64(rest.strip_prefix(br#","p":"#)?)?;
    let (t, rest) = leading_u64(rest.strip_prefix(br#","t":"#)?)?;
    if !rest.starts_with(b",") && !rest.starts_with(b"}") {
        return None;
    }
    Some(Stamp {
        s,
        p: u32::try_from(p).ok()?,
        t,
    })
}

/// The decimal number at the start of `bytes` (at most 19 digits) and what follows it.
fn leading_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
    Some((value, &bytes[digits..]))
}

/// A reply's command id, if the line is a reply.
pub fn reply_id(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(default)]
        id: u64,
    }
    let reply: Reply = serde_json::from_slice(line).ok()?;
    (reply.id > 0).then_some(reply.id)
}

/// A reply's error code, if the line is an error reply.
pub fn error_code(line: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    value.get("error")?.get("code")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_padded_json_and_reads_back() {
        let d = data(7, 3, 1_700_000_000_000_000, 100);
        assert_eq!(d.len(), 100);
        let stamp: Stamp = serde_json::from_str(&d).unwrap();
        assert_eq!(
            stamp,
            Stamp {
                s: 7,
                p: 3,
                t: 1_700_000_000_000_000
            }
        );
        assert!(
            data(1, 1, 1, 0).ends_with("\"x\":\"\"}"),
            "no padding below the minimum"
        );
    }

    #[test]
    fn lines_are_classified() {
        let push = format!(
            r#"{{"push":{{"channel":"c","pub":{{"data":{},"offset":4}}}}}}"#,
            data(2, 9, 55, 0)
        );
        assert_eq!(
            classify(push.as_bytes()),
            Received::Stamped(Stamp { s: 2, p: 9, t: 55 })
        );
        assert_eq!(
            classify(br#"{"push":{"channel":"c","pub":{"data":{"text":"hi"}}}}"#),
            Received::Foreign
        );
        assert_eq!(classify(b"{}"), Received::Ping);
        assert_eq!(classify(br#"{"id":1,"subscribe":{}}"#), Received::Other);
        assert_eq!(classify(b"garbage"), Received::Other);
        assert_eq!(
            error_code(br#"{"id":2,"error":{"code":103,"message":"x"}}"#),
            Some(103)
        );
        assert_eq!(error_code(br#"{"id":2,"publish":{}}"#), None);
        assert_eq!(reply_id(br#"{"id":2,"publish":{}}"#), Some(2));
        assert_eq!(reply_id(br#"{"push":{"channel":"c"}}"#), None);
        let escaped = format!(
            r#"{{"push":{{"channel":"a\"b","pub":{{"data":{}}}}}}}"#,
            data(1, 1, 1, 0)
        );
        assert!(
            matches!(classify(escaped.as_bytes()), Received::Stamped(_)),
            "escaped channel names"
        );
    }

    /// The fast path and the full parse agree on every layout: ringcast's, a channel name
    /// that spells the marker (escaped), other key orders, and malformed stamps.
    #[test]
    fn fast_path_agrees_with_the_full_parse() {
        let d = data(12, 4, 1_700_000_000_000_123, 60);
        let lines = [
            format!(r#"{{"push":{{"channel":"c","pub":{{"data":{d},"offset":4}}}}}}"#),
            format!(r#"{{"push":{{"channel":""pub":{{"data":{{"s":9","pub":{{"data":{d}}}}}}}"#),
            format!(r#"{{"push":{{"pub":{{"offset":1,"data":{d}}},"channel":"c"}}}}"#),
            r#"{"push":{"channel":"c","pub":{"data":{"s":1,"p":99999999999,"t":1}}}}"#.into(),
            r#"{"push":{"channel":"c","pub":{"data":{"s":1,"p":2,"t":3x}}}}"#.into(),
            r#"{"push":{"channel":"c","pub":{"data":{"s":1,"p":2}}}}"#.into(),
        ];
        for line in &lines {
            let full = match serde_json::from_slice::<Line<'_>>(line.as_bytes()) {
                Ok(l) => l
                    .push
                    .and_then(|p| p.publication)
                    .and_then(|p| serde_json::from_str::<Stamp>(p.data.get()).ok()),
                Err(_) => None,
            };
            let fast = stamp_fast(line.as_bytes());
            if fast.is_some() {
                assert_eq!(fast, full, "{line}");
            }
            assert_eq!(
                classify(line.as_bytes())
                    == Received::Stamped(Stamp {
                        s: 12,
                        p: 4,
                        t: 1_700_000_000_000_123
                    }),
                full == Some(Stamp {
                    s: 12,
                    p: 4,
                    t: 1_700_000_000_000_123
                }),
                "{line}"
            );
        }
        assert_eq!(
            stamp_fast(lines[0].as_bytes()),
            Some(Stamp {
                s: 12,
                p: 4,
                t: 1_700_000_000_000_123
            })
        );
    }
}
