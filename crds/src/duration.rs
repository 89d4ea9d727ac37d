//! Durations in the form Kubernetes and Go write them (`30s`, `5m`, `1h30m`,
//! `1.5s`), parsed with checked arithmetic.
//!
//! A duration in a stored object must never take a reader down: the API server's
//! rule only checks the syntax, so `99999999999999999999h` is accepted, and a
//! parser that overflows would panic inside every watch that lists the object.
//! This one returns an error instead, and keeps the text as written, so that a
//! value round-trips unchanged.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration such as `30s` or `1h30m` (units ns, us, µs, ms, s, m, h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration such as 30s, 5m or 1h30m (units: ns, us, ms, s, m, h)")]
    Syntax(String),
    #[error("{0:?} is too long a duration")]
    TooLong(String),
}

impl Duration {
    pub fn as_std(&self) -> std::time::Duration {
        self.value
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || DurationError::Syntax(text.to_owned());
        let too_long = || DurationError::TooLong(text.to_owned());
        if text == "0" {
            return Ok(Duration { text: text.to_owned(), value: std::time::Duration::ZERO });
        }
        let mut rest = text;
        let mut total_nanos: u128 = 0;
        if rest.is_empty() {
            return Err(syntax());
        }
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(syntax)?;
            let (number, after) = rest.split_at(number_len);
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(syntax()),
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if whole.is_empty() || fraction.contains('.') || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            let whole: u128 = whole.parse().map_err(|_| too_long())?;
            let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
            // Fractions beyond nanosecond precision are dropped, as Go does.
            let mut scale = unit_nanos;
            for digit in fraction.bytes().take(18) {
                scale /= 10;
                nanos = nanos.checked_add(u128::from(digit - b'0') * scale).ok_or_else(too_long)?;
            }
            total_nanos = total_nanos.checked_add(nanos).ok_or_else(too_long)?;
            rest = after;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| too_long())?;
        let value = std::time::Duration::new(secs, (total_nanos % 1_000_000_000) as u32);
        Ok(Duration { text: text.to_owned(), value })
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        let text =
            if value.subsec_nanos() == 0 { format!("{}s", value.as_secs()) } else { format!("{}ns", value.as_nanos()) };
        Duration { text, value }
    }
}

impl From<Duration> for std::time::Duration {
    fn from(duration: Duration) -> Self {
        duration.value
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Not "format: duration": that means ISO 8601.
        schemars::json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as Std;

    use super::*;

    fn parse(text: &str) -> Result<Std, DurationError> {
        text.parse::<Duration>().map(|d| d.as_std())
    }

    #[test]
    fn parses_what_kubernetes_writes() {
        assert_eq!(parse("0"), Ok(Std::ZERO));
        assert_eq!(parse("30s"), Ok(Std::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Std::from_secs(5400)));
        assert_eq!(parse("1.5s"), Ok(Std::from_millis(1500)));
        assert_eq!(parse("250ms"), Ok(Std::from_millis(250)));
        assert_eq!(parse("2us"), Ok(Std::from_micros(2)));
        assert_eq!(parse("2µs"), Ok(Std::from_micros(2)));
        assert_eq!("1h30m".parse::<Duration>().expect("valid").to_string(), "1h30m", "kept as written");
    }

    #[test]
    fn refuses_nonsense_and_overflow_without_panicking() {
        for text in ["", "5", "s", "5x", "1..5s", ".5s", "-5s", "5s3"] {
            assert!(matches!(parse(text), Err(DurationError::Syntax(_))), "{text:?}");
        }
        for text in ["99999999999999999999999h", "18446744073709551616s", "9999999999999999h9999999999999999h"] {
            assert!(matches!(parse(text), Err(DurationError::TooLong(_))), "{text:?}");
        }
    }
}
