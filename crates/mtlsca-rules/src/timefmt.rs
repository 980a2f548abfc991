//! How times read in output and messages (one place for every module).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `2027-02-25`
pub fn date(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// RFC 3339 in UTC, seconds precision: what every JSON field holds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// "2027-02-25 10:00:00 UTC": how times read inside reasons.
pub fn human_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        date(t),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats() {
        let t = datetime!(2027-02-25 10:00:00.5 +01:00);
        assert_eq!(date(t), "2027-02-25");
        assert_eq!(rfc3339(t), "2027-02-25T09:00:00Z");
        assert_eq!(human_time(t), "2027-02-25 09:00:00 UTC");
    }
}
