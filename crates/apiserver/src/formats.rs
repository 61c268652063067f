//! The string `format`s a custom resource's schema validates, as kube-openapi's `strfmt`
//! registry does for CRDs (apiextensions-apiserver's `supportedVersionedFormats`): `uri`,
//! `email`, `hostname`, `ipv4`, `ipv6`, `cidr`, `mac`, `uuid`(3/4/5), `isbn`(10/13),
//! `creditcard`, `ssn`, `hexcolor`, `rgbcolor`, `byte`, `password`, `date`, `datetime`
//! (`date-time`), `duration`, `bsonobjectid`, `quantity`. Names are compared without dashes;
//! other formats are ignored.
//! Source: [JSONSchemaProps.format](https://kubernetes.io/docs/reference/kubernetes-api/extend-resources/custom-resource-definition-v1/#JSONSchemaProps).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use base64::Engine as _;
use regex::Regex;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("a valid pattern"))
}

/// Whether `s` is valid for `format`; `None` for a format kube does not validate.
pub fn valid(format: &str, s: &str) -> Option<bool> {
    static UUID: OnceLock<Regex> = OnceLock::new();
    static UUID3: OnceLock<Regex> = OnceLock::new();
    static UUID4: OnceLock<Regex> = OnceLock::new();
    static UUID5: OnceLock<Regex> = OnceLock::new();
    static SSN: OnceLock<Regex> = OnceLock::new();
    static HEX: OnceLock<Regex> = OnceLock::new();
    static RGB: OnceLock<Regex> = OnceLock::new();
    static HOST: OnceLock<Regex> = OnceLock::new();
    let ok = match format.replace('-', "").as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => request_uri(s),
        "email" => email(s),
        "hostname" => {
            re(&HOST, r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z0-9\p{S}\p{L}])(-?[a-zA-Z0-9\p{S}\p{L}]){1,62})$").is_match(s)
                && s.len() <= 255
                && s.split('.').all(|p| p.len() <= 63)
        }
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<IpAddr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "uuid" => re(&UUID, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$").is_match(s),
        "uuid3" => re(&UUID3, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$").is_match(s),
        "uuid4" => re(&UUID4, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$").is_match(s),
        "uuid5" => re(&UUID5, r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$").is_match(s),
        "isbn" => isbn10(s) || isbn13(s),
        "isbn10" => isbn10(s),
        "isbn13" => isbn13(s),
        "creditcard" => credit_card(s),
        "ssn" => re(&SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$").is_match(s),
        "hexcolor" => re(&HEX, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$").is_match(s),
        "rgbcolor" => re(&RGB, r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$").is_match(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "password" => true,
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10,
        "datetime" => datetime(s),
        "duration" => duration(s),
        "quantity" => crate::admission::quantity::Quantity::parse(s).is_some(),
        _ => return None,
    };
    Some(ok)
}

/// Go's `url.ParseRequestURI`: an absolute URI (`scheme:…`) or an absolute path, without
/// spaces or control characters.
fn request_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Go's `net/mail.ParseAddress` for the common forms: `a@b` or `Name <a@b>`.
fn email(s: &str) -> bool {
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(rest)) => &rest[i + 1..],
        (None, None) => s.trim(),
        _ => return false,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atom = |p: &str| {
        !p.is_empty()
            && p.split('.').all(|a| {
                !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
            })
    };
    atom(local) && atom(domain)
}

/// Go's `net.ParseCIDR`: `address/prefix`, the prefix within the address's bits.
fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx:…`, `xx-xx-…` or `xxxx.xxxx.…`.
fn mac(s: &str) -> bool {
    let octets_ok = |n: usize| matches!(n, 6 | 8 | 20);
    for sep in [':', '-'] {
        if s.contains(sep) {
            let parts: Vec<&str> = s.split(sep).collect();
            return octets_ok(parts.len())
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() > 1
        && octets_ok(parts.len() * 2)
        && parts
            .iter()
            .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn digits_only(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

fn isbn10(s: &str) -> bool {
    let d = digits_only(s);
    let b = d.as_bytes();
    if b.len() != 10
        || !b[..9].iter().all(u8::is_ascii_digit)
        || !(b[9].is_ascii_digit() || b[9] == b'X')
    {
        return false;
    }
    let sum: u32 = b
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = if *c == b'X' { 10 } else { u32::from(c - b'0') };
            (i as u32 + 1) * v
        })
        .sum();
    sum.is_multiple_of(11)
}

fn isbn13(s: &str) -> bool {
    let d = digits_only(s);
    let b = d.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..12]
        .iter()
        .enumerate()
        .map(|(i, c)| u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(b[12] - b'0')
}

/// govalidator's `IsCreditCard`: the card patterns over the digits, and Luhn's checksum.
fn credit_card(s: &str) -> bool {
    static CARD: OnceLock<Regex> = OnceLock::new();
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    if !re(&CARD, r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$").is_match(&d) {
        return false;
    }
    let sum: u32 = d
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let v = u32::from(c - b'0');
            if i % 2 == 1 {
                let x = v * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// kube-openapi's `ParseDateTime` layouts: RFC 3339 (any fraction), without a zone, or with
/// minutes only.
fn datetime(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%MZ").is_ok()
}

/// kube-openapi's `ParseDuration`: Go's `time.ParseDuration` (`1h30m`, `-1.5s`, `0`), else
/// counts with units separated by spaces (`22 ns`, `3 days`).
fn duration(s: &str) -> bool {
    go_duration(s) || scala_duration(s)
}

fn go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_end],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_end..];
    }
    true
}

fn scala_duration(s: &str) -> bool {
    static PART: OnceLock<Regex> = OnceLock::new();
    const UNITS: &[&str] = &[
        "ns",
        "nano",
        "nanos",
        "nanosec",
        "nanosecs",
        "nanosecond",
        "nanoseconds",
        "us",
        "µs",
        "micro",
        "micros",
        "microsec",
        "microsecs",
        "microsecond",
        "microseconds",
        "ms",
        "milli",
        "millis",
        "millisec",
        "millisecs",
        "millisecond",
        "milliseconds",
        "s",
        "sec",
        "secs",
        "second",
        "seconds",
        "m",
        "min",
        "mins",
        "minute",
        "minutes",
        "h",
        "hr",
        "hrs",
        "hour",
        "hours",
        "d",
        "day",
        "days",
        "w",
        "wk",
        "wks",
        "week",
        "weeks",
    ];
    re(&PART, r"(\d+)\s*([A-Za-zµ]+)")
        .captures_iter(s)
        .any(|c| UNITS.contains(&c[2].to_lowercase().trim()))
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn formats() {
        let cases = [
            ("date-time", "2024-02-14T15:30:00Z", "2024-02-14 nope"),
            ("datetime", "2024-02-14T15:30:00.123+01:00", "yesterday"),
            ("date", "2024-02-14", "2024-02-30"),
            ("email", "a.b@example.com", "not-an-email"),
            ("hostname", "node-1.example.com", "-bad-.example.com"),
            ("ipv4", "10.0.0.1", "10.0.0.256"),
            ("ipv6", "fd00::1", "10.0.0.1"),
            ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
            ("mac", "02:42:ac:11:00:02", "02:42:ac:11:00"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567"),
            ("uri", "https://example.com/x?y=1", "example.com"),
            ("byte", "aGVsbG8=", "not base64!"),
            ("duration", "1h30m", "ten minutes"),
            ("duration", "3 days", "3 fortnights"),
            ("quantity", "10Gi", "10 apples"),
            ("isbn", "978-0321751041", "978-0321751042"),
            ("hexcolor", "#ffaa00", "#ffaa0"),
        ];
        for (format, good, bad) in cases {
            assert_eq!(valid(format, good), Some(true), "{format} {good}");
            assert_eq!(valid(format, bad), Some(false), "{format} {bad}");
        }
        assert_eq!(valid("int32", "anything"), None);
        assert_eq!(valid("my-own-format", "anything"), None);
    }
}
