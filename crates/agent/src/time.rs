//! Kubernetes' time formats: `metav1.Time` (RFC 3339, seconds, UTC) and `metav1.MicroTime`
//! (microseconds), and the engine's RFC 3339 nano timestamps read back.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `metav1.Time` of `t`: `2006-01-02T15:04:05Z`.
pub(crate) fn kube_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Now as `metav1.Time`.
pub(crate) fn now() -> String {
    kube_time(OffsetDateTime::now_utc())
}

/// Now as `metav1.MicroTime`: `2006-01-02T15:04:05.000000Z`.
pub(crate) fn now_micro() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{}.{:06}Z",
        kube_time(t).trim_end_matches('Z'),
        t.microsecond()
    )
}

/// Parses an engine timestamp (RFC 3339 nano); `None` for Go's zero time or garbage.
pub(crate) fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .filter(|t| t.year() > 1)
}

/// An engine timestamp as `metav1.Time` (`None` for the zero time).
pub(crate) fn engine_to_kube(s: &str) -> Option<String> {
    parse(s).map(kube_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = parse("2026-12-05T21:03:04.123456789Z").unwrap();
        assert_eq!(kube_time(t), "2026-12-05T21:03:04Z");
        assert_eq!(parse("0001-01-01T00:00:00Z"), None);
        assert_eq!(engine_to_kube("x"), None);
        let m = now_micro();
        assert_eq!(m.len(), "2026-12-05T21:03:04.123456Z".len(), "{m}");
    }
}
