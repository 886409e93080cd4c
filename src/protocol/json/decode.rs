//! Decoding: one client command line (`parse_command`), and the nesting bound every JSON
//! payload the server passes on must respect (`depth_within`).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::{Command, Request};

/// The envelope: every request field as raw JSON, so unknown fields are ignored and the first
/// present request wins regardless of key order (js puts `id` last, python first).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: u32,
    #[serde(borrow, default)]
    connect: Option<&'a RawValue>,
    #[serde(borrow, default)]
    subscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unsubscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    publish: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence_stats: Option<&'a RawValue>,
    #[serde(borrow, default)]
    history: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ping: Option<&'a RawValue>,
    #[serde(borrow, default)]
    send: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refresh: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sub_refresh: Option<&'a RawValue>,
}

/// Why a line is not a command; both mean "bad request" to the client (close 3501).
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Json,
    UnknownMethod,
}

fn inner<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, ParseError> {
    serde_json::from_str(raw.get()).map_err(|_| ParseError::Json)
}

/// Parses one command line.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_slice(line).map_err(|_| ParseError::Json)?;
    let request = if let Some(raw) = envelope.connect {
        Request::Connect(inner(raw)?)
    } else if let Some(raw) = envelope.subscribe {
        Request::Subscribe(inner(raw)?)
    } else if let Some(raw) = envelope.unsubscribe {
        Request::Unsubscribe(inner(raw)?)
    } else if let Some(raw) = envelope.publish {
        Request::Publish(inner(raw)?)
    } else if let Some(raw) = envelope.presence {
        Request::Presence(inner(raw)?)
    } else if let Some(raw) = envelope.presence_stats {
        Request::PresenceStats(inner(raw)?)
    } else if let Some(raw) = envelope.history {
        Request::History(inner(raw)?)
    } else if envelope.ping.is_some() {
        // Defined but unused by SDKs; current Centrifugo treats it as malformed.
        return Err(ParseError::UnknownMethod);
    } else if envelope.send.is_some() {
        Request::Send
    } else if envelope.rpc.is_some() {
        Request::Rpc
    } else if let Some(raw) = envelope.refresh {
        Request::Refresh(inner(raw)?)
    } else if let Some(raw) = envelope.sub_refresh {
        Request::SubRefresh(inner(raw)?)
    } else if envelope.id == 0 {
        Request::Pong
    } else {
        return Err(ParseError::UnknownMethod);
    };
    Ok(Command {
        id: envelope.id,
        request,
    })
}

/// True if the JSON text `raw` nests arrays and objects at most `max` deep. serde_json keeps
/// a `RawValue` without walking it against its recursion limit, so data that is passed on
/// verbatim (publication data) is checked here, in one pass without recursion.
pub fn depth_within(raw: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ConnectRequest;

    #[test]
    fn both_sdks_key_orders_parse() {
        let js = parse_command(br#"{"connect":{"token":"T","name":"js"},"id":1}"#).unwrap();
        assert_eq!(js.id, 1);
        assert!(
            matches!(js.request, Request::Connect(ConnectRequest { ref token, .. }) if token == "T")
        );
        let py =
            parse_command(br#"{"id": 2, "subscribe": {"channel": "news", "flag": 1}}"#).unwrap();
        assert!(matches!(py.request, Request::Subscribe(ref c) if c.channel == "news"));
        let publish =
            parse_command(br#"{"publish":{"channel":"c","data":{"a" : 1}},"id":4}"#).unwrap();
        let Request::Publish(p) = publish.request else {
            panic!()
        };
        assert_eq!(p.data.unwrap().get(), r#"{"a" : 1}"#);
        assert!(matches!(
            parse_command(b"{}").unwrap().request,
            Request::Pong
        ));
        assert!(matches!(
            parse_command(br#"{"send":{"data":{}}}"#).unwrap().request,
            Request::Send
        ));
    }

    #[test]
    fn bad_lines_are_errors() {
        assert_eq!(parse_command(b"nope").unwrap_err(), ParseError::Json);
        assert_eq!(
            parse_command(br#"{"id":3,"frobnicate":{}}"#).unwrap_err(),
            ParseError::UnknownMethod
        );
        assert_eq!(
            parse_command(br#"{"id":3,"subscribe":{"channel":5}}"#).unwrap_err(),
            ParseError::Json
        );
    }

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(depth_within(b"1", 0));
        assert!(depth_within(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(!depth_within(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(depth_within(br#"{"a":"[[[[{{{{\"[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(!depth_within(deep.as_bytes(), 128));
        assert!(depth_within(deep.as_bytes(), 200));
    }
}
