//! Durations as Kubernetes writes them ("500ms", "30s", "10m", "1h30m"): Go's
//! `time.ParseDuration` syntax, parsed once here into a real [`std::time::Duration`].

use std::{borrow::Cow, fmt, str::FromStr, time};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The syntax the CRD schema enforces, so the API server rejects what [`Duration::from_str`] would.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$";

/// A non-negative duration written in Go syntax; serialized in its shortest exact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub time::Duration);

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {text:?}: {why}; write a number and a unit (ns, us, ms, s, m, h), e.g. \"500ms\", \"30s\", \"5m\", \"1h30m\""
)]
pub struct DurationError {
    text: String,
    why: &'static str,
}

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(time::Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(time::Duration::from_millis(ms))
    }

    pub fn as_std(&self) -> time::Duration {
        self.0
    }
}

impl From<Duration> for time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why| DurationError { text: text.to_string(), why };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.starts_with('-') {
            return Err(fail("it is negative"));
        }
        let mut rest = text;
        let mut total = time::Duration::ZERO;
        while !rest.is_empty() {
            let digits_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits_end);
            if number.is_empty() || number.starts_with('.') || number.ends_with('.') || number.matches('.').count() > 1
            {
                return Err(fail("a number is missing or malformed"));
            }
            let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_end);
            let scale = match unit {
                "ns" => time::Duration::from_nanos(1),
                "us" | "\u{b5}s" | "\u{3bc}s" => time::Duration::from_micros(1),
                "ms" => time::Duration::from_millis(1),
                "s" => time::Duration::from_secs(1),
                "m" => time::Duration::from_secs(60),
                "h" => time::Duration::from_secs(3600),
                "" => return Err(fail("a unit is missing")),
                _ => return Err(fail("the unit is unknown")),
            };
            let value: f64 = number.parse().map_err(|_| fail("a number is malformed"))?;
            let nanos = value * scale.as_nanos() as f64;
            if !nanos.is_finite() || nanos >= u64::MAX as f64 {
                return Err(fail("it is too large"));
            }
            let part = time::Duration::from_nanos(nanos.round() as u64);
            total = total.checked_add(part).ok_or_else(|| fail("it is too large"))?;
            rest = tail;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Duration {
    /// Shortest exact Go form: "5m", "1m30s", "500ms", "0s".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(&str, u128); 6] = [
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ];
        for (unit, size) in UNITS {
            if nanos >= size {
                write!(f, "{}{unit}", nanos / size)?;
                nanos %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> time::Duration {
        text.parse::<Duration>().unwrap().0
    }

    #[test]
    fn parses_the_guides_durations() {
        assert_eq!(d("500ms"), time::Duration::from_millis(500));
        assert_eq!(d("30s"), time::Duration::from_secs(30));
        assert_eq!(d("10m"), time::Duration::from_secs(600));
        assert_eq!(d("1m"), time::Duration::from_secs(60));
        assert_eq!(d("1h30m"), time::Duration::from_secs(5400));
        assert_eq!(d("1.5s"), time::Duration::from_millis(1500));
        assert_eq!(d("250us"), time::Duration::from_micros(250));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "5", "m", "5 m", "5min", "-1s", "1.s", ".5s", "1..5s", "10 seconds", "1d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn prints_the_shortest_exact_form_and_round_trips() {
        for (text, printed) in [("5m", "5m"), ("90s", "1m30s"), ("500ms", "500ms"), ("1h", "1h"), ("0s", "0s")] {
            let parsed: Duration = text.parse().unwrap();
            assert_eq!(parsed.to_string(), printed);
            assert_eq!(printed.parse::<Duration>().unwrap(), parsed);
        }
    }
}
