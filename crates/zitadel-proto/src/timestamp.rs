//! `google.protobuf.Timestamp` with its canonical JSON form: RFC 3339 in UTC with a `Z`, and
//! 0, 3, 6 or 9 fractional digits (`2025-01-03T13:39:46.823Z`), as protojson writes it.

use std::fmt::Write as _;

use serde::de::Error as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_unix_millis(millis: i64) -> Self {
        Self {
            seconds: millis.div_euclid(1000),
            nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }
    }

    fn to_datetime(self) -> Option<OffsetDateTime> {
        let nanos = i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos);
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    }

    /// The canonical JSON text, or `None` outside the years 1 to 9999.
    pub fn to_rfc3339(self) -> Option<String> {
        let at = self.to_datetime()?;
        if !(1..=9999).contains(&at.year()) || !(0..1_000_000_000).contains(&self.nanos) {
            return None;
        }
        let mut text = String::with_capacity(30);
        let _ = write!(
            text,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let nanos = self.nanos;
        if nanos != 0 {
            if nanos % 1_000_000 == 0 {
                let _ = write!(text, ".{:03}", nanos / 1_000_000);
            } else if nanos % 1_000 == 0 {
                let _ = write!(text, ".{:06}", nanos / 1_000);
            } else {
                let _ = write!(text, ".{nanos:09}");
            }
        }
        text.push('Z');
        Some(text)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self
            .to_rfc3339()
            .ok_or_else(|| serde::ser::Error::custom("timestamp out of range"))?;
        serializer.serialize_str(&text)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let at = OffsetDateTime::parse(&text, &Rfc3339).map_err(D::Error::custom)?;
        Ok(Self {
            seconds: at.unix_timestamp(),
            nanos: i32::try_from(at.nanosecond()).map_err(D::Error::custom)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_utc_with_the_fewest_digit_groups() {
        let millis = 1_735_911_586_823;
        let json = |t: Timestamp| serde_json::to_string(&t).unwrap();
        assert_eq!(
            json(Timestamp::from_unix_millis(millis)),
            "\"2025-01-03T13:39:46.823Z\""
        );
        assert_eq!(
            json(Timestamp::from_unix_millis(1_735_911_586_000)),
            "\"2025-01-03T13:39:46Z\""
        );
        assert_eq!(
            json(Timestamp {
                seconds: 0,
                nanos: 1_500
            }),
            "\"1970-01-01T00:00:00.000001500Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2025-01-03T14:39:46.823+01:00\"").unwrap();
        assert_eq!(back, Timestamp::from_unix_millis(millis));
    }
}
