//! `GoDuration`: durations written the way Centrifugo (Go's `time.ParseDuration`) writes them:
//! `"25s"`, `"1m30s"`, `"100ms"`, `"1.5h"`, `"-1s"`, `"0"`; units ns, us (µs), ms, s, m, h.
//! A bare number in a file means nanoseconds, as it does for Centrifugo (a `-1` disables
//! pings there); a unit-less string other than `"0"` is an error.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A signed duration in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub i64);

impl GoDuration {
    pub const fn from_millis(ms: i64) -> Self {
        GoDuration(ms * 1_000_000)
    }

    pub const fn from_secs(s: i64) -> Self {
        GoDuration(s * 1_000_000_000)
    }

    /// Whole milliseconds (rounded down); negative durations give 0.
    pub fn as_millis(self) -> u64 {
        (self.0.max(0) / 1_000_000) as u64
    }

    /// The duration, or `None` when it is zero or negative (Centrifugo's "disabled").
    pub fn positive(self) -> Option<Duration> {
        (self.0 > 0).then(|| Duration::from_nanos(self.0 as u64))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Parses Go's duration syntax.
    pub fn parse(text: &str) -> Result<GoDuration, String> {
        let bad = || format!("{text:?} is not a duration like \"25s\", \"1m30s\" or \"100ms\"");
        let (negative, mut rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        if rest == "0" {
            return Ok(GoDuration(0));
        }
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: f64 = 0.0;
        // Bounded by the text: every round consumes a number and a unit.
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("{text:?}: missing unit (use ns, us, ms, s, m or h)"))?;
            let (number, tail) = rest.split_at(digits);
            let value: f64 = number.parse().map_err(|_| bad())?;
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let scale = match unit {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => {
                    return Err(format!(
                        "{text:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)"
                    ))
                }
            };
            total += value * scale;
            rest = tail;
        }
        if total > i64::MAX as f64 {
            return Err(format!("{text:?} is too long"));
        }
        let nanos = total.round() as i64;
        Ok(GoDuration(if negative { -nanos } else { nanos }))
    }
}

impl std::fmt::Display for GoDuration {
    /// The largest unit that states the duration exactly: `25s`, `100ms`, `720h`, `0s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        if n == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ] {
            if n % size == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}ns")
    }
}

impl Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Nanos(n) => Ok(GoDuration(n)),
            Raw::Text(t) => GoDuration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        let p = |t| GoDuration::parse(t);
        assert_eq!(p("25s"), Ok(GoDuration::from_secs(25)));
        assert_eq!(p("1m30s"), Ok(GoDuration::from_secs(90)));
        assert_eq!(p("100ms"), Ok(GoDuration::from_millis(100)));
        assert_eq!(p("1.5h"), Ok(GoDuration::from_secs(5400)));
        assert_eq!(p("720h0m0s"), Ok(GoDuration::from_secs(720 * 3600)));
        assert_eq!(p("-1s"), Ok(GoDuration::from_secs(-1)));
        assert_eq!(p("0"), Ok(GoDuration(0)));
        assert_eq!(p("300us"), Ok(GoDuration(300_000)));
        assert!(p("25").unwrap_err().contains("missing unit"));
        assert!(p("1d").unwrap_err().contains("unknown unit"));
        assert!(p("").is_err() && p("s").is_err() && p("-").is_err());
        for d in ["25s", "100ms", "720h", "0s", "90s", "1500us", "7ns"] {
            assert_eq!(p(d).unwrap().to_string(), d);
        }
        let n: GoDuration = serde_json::from_str("-1").unwrap();
        assert!(n.is_negative() && n.positive().is_none());
        assert_eq!(GoDuration::from_millis(2500).as_millis(), 2500);
    }
}
