//! Serde helpers: `SystemTime` as RFC 3339 text (`2026-11-22T01:59:17.123Z`), and
//! parsing of the timestamps dialects send.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

/// Formats a time as RFC 3339 in UTC.
pub fn format(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "invalid-time".into())
}

/// Parses an RFC 3339 or ISO 8601 date-time (with offset) into a `SystemTime`.
pub fn parse(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .ok()
        .map(SystemTime::from)
}

/// Serializes a `SystemTime` as RFC 3339.
pub fn serialize<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at))
}

/// Deserializes a `SystemTime` from RFC 3339.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
}

/// The same for `Option<SystemTime>`.
pub mod option {
    use super::*;

    /// Serializes an optional `SystemTime` as RFC 3339 or null.
    pub fn serialize<S: Serializer>(
        at: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes an optional RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| {
            parse(&t).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_the_shapes_servers_send() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        assert_eq!(parse(&format(at)), Some(at));
        assert_eq!(parse("2025-11-24T16:00:00Z"), Some(at));
        assert_eq!(parse("2025-11-24T18:00:00+02:00"), Some(at));
        assert_eq!(parse("2025-11-24T16:00:00.000Z"), Some(at));
        assert_eq!(parse("tomorrow"), None);
        assert_eq!(parse(""), None);
    }
}
