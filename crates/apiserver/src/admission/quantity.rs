//! Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`) as far as
//! admission needs them: parse (`500m`, `1.5`, `128Mi`, `1G`, `1e3`), add, compare, and print
//! in kube's canonical form (`1024Mi` → `1Gi`, `1000` → `1k`, `0.5` → `500m`).

use std::cmp::Ordering;
use std::fmt;

/// Binary (`Ki`…`Ei`) or decimal (`m`, `k`…`E`, exponents) suffixes: what a printed sum keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Binary,
    Decimal,
}

/// A quantity in thousandths of its unit (cores → millicores, bytes → millibytes).
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    pub milli: i128,
    pub format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

const BINARY: &[(&str, u32)] = &[
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: &[(&str, u32)] = &[("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6)];

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        milli: 0,
        format: Format::Decimal,
    };

    /// Parses kube's quantity syntax; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(end);
        if num.is_empty() || num == "." {
            return None;
        }
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        // The number × 1000 as an integer, with the fraction digits kept as an exponent.
        let digits = format!("{int}{frac}");
        let mut value: i128 = digits.parse().ok()?;
        let mut exp10: i32 = 3 - frac.len() as i32;
        let mut mul: i128 = 1;
        let format = if let Some((_, p)) = BINARY.iter().find(|(n, _)| *n == suffix) {
            mul = 1i128 << (10 * p);
            Format::Binary
        } else if let Some((_, p)) = DECIMAL.iter().find(|(n, _)| *n == suffix) {
            exp10 += 3 * *p as i32;
            Format::Decimal
        } else if suffix == "m" {
            exp10 -= 3;
            Format::Decimal
        } else if suffix.is_empty() {
            Format::Decimal
        } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
            exp10 += e.parse::<i32>().ok()?;
            Format::Decimal
        } else {
            return None;
        };
        value = value.checked_mul(mul)?;
        if exp10 >= 0 {
            value = value.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
        } else {
            // Below a milli-unit: kube rounds up.
            let d = 10i128.checked_pow((-exp10) as u32)?;
            value = (value + d - 1) / d;
        }
        Some(Quantity {
            milli: if neg { -value } else { value },
            format,
        })
    }

    /// A quantity of `n` whole units (object counts).
    pub fn count(n: i64) -> Quantity {
        Quantity {
            milli: i128::from(n) * 1000,
            format: Format::Decimal,
        }
    }

    /// `self + other`, in `self`'s format (kube's `Add`), `other`'s if `self` is zero.
    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + other.milli,
            format: if self.milli == 0 {
                other.format
            } else {
                self.format
            },
        }
    }

    /// The whole units, rounded up (kube's `Value()`).
    pub fn value(self) -> i128 {
        (self.milli + 999).div_euclid(1000)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli % 1000 != 0 {
            return write!(f, "{}m", self.milli);
        }
        let v = self.milli / 1000;
        if v == 0 {
            return write!(f, "0");
        }
        let (table, base): (&[(&str, u32)], i128) = match self.format {
            Format::Binary => (BINARY, 1024),
            Format::Decimal => (DECIMAL, 1000),
        };
        for (suffix, p) in table.iter().rev() {
            let unit = base.pow(*p);
            if v % unit == 0 {
                return write!(f, "{}{suffix}", v / unit);
            }
        }
        write!(f, "{v}")
    }
}

/// A `ResourceList` value (a JSON string or number) as a quantity.
pub fn of(v: &serde_json::Value) -> Option<Quantity> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_canonically() {
        let p = |s: &str| Quantity::parse(s).unwrap().to_string();
        assert_eq!(p("500m"), "500m");
        assert_eq!(p("0.5"), "500m");
        assert_eq!(p("1"), "1");
        assert_eq!(p("1000"), "1k");
        assert_eq!(p("1024Mi"), "1Gi");
        assert_eq!(p("128Mi"), "128Mi");
        assert_eq!(p("1G"), "1G");
        assert_eq!(p("1e3"), "1k");
        assert_eq!(p("1.5Gi"), "1536Mi");
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("1Qi").is_none());
        let a = Quantity::parse("256Mi").unwrap();
        let b = Quantity::parse("768Mi").unwrap();
        assert_eq!(a.plus(b).to_string(), "1Gi");
        assert!(Quantity::parse("1").unwrap() > Quantity::parse("999m").unwrap());
        assert_eq!(Quantity::parse("1500m").unwrap().value(), 2);
    }
}
