//! cty numbers.
//!
//! cty numbers are arbitrary-precision decimals (Go `big.Float` with 512 bits). On the wire they arrive as a
//! msgpack int, uint, float32/64 or a *decimal string* for values that fit neither (go-cty `marshal.go`), and in
//! JSON state as number text of any length. Terraform compares planned and applied values exactly, so a provider
//! must hand back the very number it was given: [`Number`] keeps an `i64`, an `f64`, or the decimal text verbatim
//! ([`Number::Big`]), and compares all three *numerically* (so `Int(2) == Float(2.0) == Big("2.00")`).

use std::cmp::Ordering;
use std::fmt;

/// A cty number: an exact integer, a float, or a decimal kept as its text.
///
/// Invariants kept by the codec (not by the type, the variants are public): `Big` holds a valid decimal
/// (`-?D+(.D+)?([eE][+-]?D+)?`), and `Float` is never NaN. Use [`Number::parse`] and [`Number::from_f64`] to build
/// them safely.
#[derive(Debug, Clone)]
pub enum Number {
    /// An integer that fits in an i64.
    Int(i64),
    /// A binary float (includes ±infinity, which cty transports as float64).
    Float(f64),
    /// A decimal that is kept as text to preserve precision (big integers, `0.1` from HCL, JSON numbers).
    Big(String),
}

/// Canonical form for comparison: sign, significant digits without leading/trailing zeros, and the decimal
/// exponent of the first digit (value = 0.d1d2d3... x 10^exp).
#[derive(Debug, PartialEq, Eq)]
enum Canon {
    NegInf,
    Finite {
        neg: bool,
        digits: Vec<u8>,
        exp: i64,
    },
    PosInf,
    NaN,
}

/// Splits a decimal literal into sign, mantissa digits and the exponent of the first digit. None if invalid.
fn parse_decimal(s: &str) -> Option<(bool, Vec<u8>, i64)> {
    let b = s.as_bytes();
    let mut i = 0;
    let neg = b.first() == Some(&b'-');
    if neg {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &b[int_start..i];
    if int_digits.is_empty() {
        return None;
    }
    let mut frac_digits: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &b[start..i];
        if frac_digits.is_empty() {
            return None;
        }
    }
    let mut exp10: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            eneg = b[i] == b'-';
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let e = &b[start..i];
        if e.is_empty() {
            return None;
        }
        // Ignore leading zeros, then cap the length so the exponent fits comfortably in an i64.
        let e: &[u8] = {
            let nz = e.iter().position(|&c| c != b'0').unwrap_or(e.len());
            &e[nz..]
        };
        if e.len() > 15 {
            return None;
        }
        for &c in e {
            exp10 = exp10 * 10 + i64::from(c - b'0');
        }
        if eneg {
            exp10 = -exp10;
        }
    }
    if i != b.len() {
        return None;
    }
    let mut digits: Vec<u8> = int_digits.iter().chain(frac_digits).copied().collect();
    let mut exp = i64::try_from(int_digits.len()).ok()? + exp10;
    let lead = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    digits.drain(..lead);
    exp -= i64::try_from(lead).ok()?;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return Some((false, digits, 0));
    }
    Some((neg, digits, exp))
}

impl Number {
    /// Parses a decimal literal (`-12`, `0.1`, `1e400`, `123456789012345678901234567890`). Plain integers that fit
    /// an i64 become [`Number::Int`]; everything else is kept verbatim as [`Number::Big`]. None if not a decimal.
    pub fn parse(s: &str) -> Option<Number> {
        parse_decimal(s)?;
        let plain = s
            .bytes()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == b'-'));
        if plain {
            if let Ok(i) = s.parse::<i64>() {
                if s == i.to_string() {
                    return Some(Number::Int(i));
                }
            }
        }
        Some(Number::Big(s.to_owned()))
    }

    /// A float as a number; None for NaN (cty has no NaN).
    pub fn from_f64(f: f64) -> Option<Number> {
        if f.is_nan() {
            None
        } else {
            Some(Number::Float(f))
        }
    }

    fn canon(&self) -> Canon {
        match self {
            Number::Int(i) => {
                let (neg, digits, exp) =
                    parse_decimal(&i.to_string()).unwrap_or((false, vec![], 0));
                Canon::Finite { neg, digits, exp }
            }
            Number::Float(f) => {
                if f.is_nan() {
                    Canon::NaN
                } else if f.is_infinite() {
                    if *f > 0.0 {
                        Canon::PosInf
                    } else {
                        Canon::NegInf
                    }
                } else {
                    // `{:e}` is the shortest text that round-trips, e.g. `1e-1` for 0.1.
                    let (neg, digits, exp) =
                        parse_decimal(&format!("{f:e}")).unwrap_or((false, vec![], 0));
                    Canon::Finite { neg, digits, exp }
                }
            }
            Number::Big(s) => match parse_decimal(s) {
                Some((neg, digits, exp)) => Canon::Finite { neg, digits, exp },
                None => Canon::NaN,
            },
        }
    }

    /// Whether the value is a whole number (any size).
    pub fn is_integer(&self) -> bool {
        match self.canon() {
            Canon::Finite { digits, exp, .. } => digits.is_empty() || exp >= digits.len() as i64,
            _ => false,
        }
    }

    fn as_i128(&self) -> Option<i128> {
        if let Number::Int(i) = self {
            return Some(i128::from(*i));
        }
        match self.canon() {
            Canon::Finite { neg, digits, exp } => {
                if digits.is_empty() {
                    return Some(0);
                }
                if exp < digits.len() as i64 || exp > 20 {
                    return None;
                }
                let mut v: i128 = 0;
                for k in 0..exp as usize {
                    let d = digits.get(k).map_or(0, |c| c - b'0');
                    v = v * 10 + i128::from(d);
                }
                Some(if neg { -v } else { v })
            }
            _ => None,
        }
    }

    /// The value as an i64 if it is a whole number in range (exactly, whatever the variant).
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as a u64 if it is a whole number in range.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// The value as the nearest f64 (lossy for big decimals; use [`Number::to_decimal_string`] to keep precision).
    pub fn as_f64(&self) -> f64 {
        match self {
            Number::Int(i) => *i as f64,
            Number::Float(f) => *f,
            Number::Big(s) => s.parse().unwrap_or(f64::NAN),
        }
    }

    /// Decimal text of the value: integers plainly, floats as the shortest text that round-trips (no exponent),
    /// big numbers exactly as given. Infinity renders as `+Inf`/`-Inf`.
    pub fn to_decimal_string(&self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) if f.is_infinite() => {
                if *f > 0.0 {
                    "+Inf".into()
                } else {
                    "-Inf".into()
                }
            }
            Number::Float(f) => format!("{f}"),
            Number::Big(s) => s.clone(),
        }
    }
}

fn cmp_magnitude(ad: &[u8], ae: i64, bd: &[u8], be: i64) -> Ordering {
    match (ad.is_empty(), bd.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => ae.cmp(&be).then_with(|| ad.cmp(bd)),
    }
}

impl Ord for Number {
    /// Numeric order; NaN (which the codec never produces) sorts last and equals itself.
    fn cmp(&self, other: &Self) -> Ordering {
        if let (Number::Int(a), Number::Int(b)) = (self, other) {
            return a.cmp(b);
        }
        fn rank(c: &Canon) -> u8 {
            match c {
                Canon::NegInf => 0,
                Canon::Finite { .. } => 1,
                Canon::PosInf => 2,
                Canon::NaN => 3,
            }
        }
        let (a, b) = (self.canon(), other.canon());
        match (&a, &b) {
            (
                Canon::Finite {
                    neg: an,
                    digits: ad,
                    exp: ae,
                },
                Canon::Finite {
                    neg: bn,
                    digits: bd,
                    exp: be,
                },
            ) => match (an, bn) {
                (false, true) => Ordering::Greater,
                (true, false) => Ordering::Less,
                (false, false) => cmp_magnitude(ad, *ae, bd, *be),
                (true, true) => cmp_magnitude(bd, *be, ad, *ae),
            },
            _ => rank(&a).cmp(&rank(&b)),
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Number {}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Number {
                Number::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Number {
    fn from(v: u64) -> Number {
        match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Big(v.to_string()),
        }
    }
}

impl From<f64> for Number {
    /// NaN has no cty equivalent; it is kept as a float and rejected by the encoder.
    fn from(v: f64) -> Number {
        Number::Float(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> Number {
        Number::Big(s.into())
    }

    #[test]
    fn parse_keeps_text_and_normalises_small_ints() {
        assert!(matches!(Number::parse("42"), Some(Number::Int(42))));
        assert!(matches!(
            Number::parse("-9223372036854775808"),
            Some(Number::Int(i64::MIN))
        ));
        let n = Number::parse("9223372036854775808").unwrap();
        assert!(matches!(&n, Number::Big(s) if s == "9223372036854775808"));
        assert!(matches!(Number::parse("007"), Some(Number::Big(s)) if s == "007"));
        assert!(matches!(Number::parse("0.1"), Some(Number::Big(s)) if s == "0.1"));
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "abc",
            "1.2.3",
            "+1",
            "NaN",
            "1e9999999999999999",
        ] {
            assert!(Number::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn compares_numerically_across_variants() {
        assert_eq!(Number::Int(2), Number::Float(2.0));
        assert_eq!(Number::Int(2), big("2.000"));
        assert_eq!(big("2e3"), Number::Int(2000));
        assert_eq!(Number::Float(0.1), big("0.1"));
        assert_eq!(Number::Float(-0.0), Number::Int(0));
        assert!(big("-1e400") < Number::Int(i64::MIN));
        assert!(big("1e400") > Number::Int(i64::MAX));
        assert!(big("1e400") < Number::Float(f64::INFINITY));
        assert!(Number::Float(f64::NEG_INFINITY) < big("-1e400"));
        assert!(big("0.0001") < big("0.001"));
        assert!(big("-0.0001") > big("-0.001"));
        assert!(big("12") < big("123"));
        assert!(big("1.2") < big("1.23"));
        assert_ne!(
            big("12345678901234567890123"),
            big("12345678901234567890124")
        );
    }

    #[test]
    fn integer_conversions_are_exact() {
        assert_eq!(big("1e3").as_i64(), Some(1000));
        assert_eq!(big("1.5").as_i64(), None);
        assert_eq!(Number::Float(3.0).as_i64(), Some(3));
        assert_eq!(Number::Float(3.5).as_i64(), None);
        assert_eq!(big("18446744073709551615").as_u64(), Some(u64::MAX));
        assert_eq!(big("18446744073709551616").as_u64(), None);
        assert_eq!(big("-1").as_u64(), None);
        assert_eq!(big("1e30").as_i64(), None);
        assert!(big("1e30").is_integer());
        assert!(!big("1.000001").is_integer());
        assert_eq!(Number::Float(f64::INFINITY).as_i64(), None);
    }

    #[test]
    fn decimal_string() {
        assert_eq!(Number::Float(1.5).to_decimal_string(), "1.5");
        assert_eq!(
            Number::Float(1e21).to_decimal_string(),
            "1000000000000000000000"
        );
        assert_eq!(big("0.10").to_decimal_string(), "0.10");
        assert_eq!(Number::from(u64::MAX), big("18446744073709551615"));
    }
}
