//! Resource quantities (`"100m"`, `"1.5"`, `"128Mi"`, `"1e3"`) turned into integers.
//!
//! The grammar is the API's: an optionally signed decimal number (`"1"`, `"1.5"`, `".5"`, `"1."`)
//! followed by at most one suffix, which is binary (`Ki Mi Gi Ti Pi Ei`), decimal SI
//! (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`). The scheduler needs whole
//! numbers: CPU in millicores ([`Quantity::milli_value`]) and everything else in units
//! ([`Quantity::value`]); both round up, as the API's `MilliValue` and `Value` do, and saturate
//! at the bounds of `i64` instead of overflowing.
//!
//! The number is kept exactly as `mantissa * 10^exp10 * 2^exp2` until it is scaled, so `"0.1"`
//! cores is exactly 100 millicores and `"1Ki"` exactly 1024.

use thiserror::Error;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {0:?} has no digits")]
    NoDigits(String),
    #[error("quantity {0:?} has an unknown suffix")]
    UnknownSuffix(String),
}

/// A parsed quantity: `sign * mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
    /// Nonzero digits beyond what the mantissa holds were dropped: the true magnitude is a
    /// little larger than `mantissa * ...`.
    inexact: bool,
}

/// The most decimal digits the mantissa keeps (10^37 < 2^128 / 10).
const MAX_MANTISSA: u128 = 10u128.pow(37);

impl Quantity {
    /// Parses a quantity string in the API's syntax.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if bytes[0] == b'+' || bytes[0] == b'-' {
            negative = bytes[0] == b'-';
            i = 1;
        }
        let mut mantissa: u128 = 0;
        let mut exp10: i32 = 0;
        let mut inexact = false;
        let mut digits = 0;
        let mut seen_point = false;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'.' {
                if seen_point {
                    break;
                }
                seen_point = true;
            } else if b.is_ascii_digit() {
                digits += 1;
                let d = u128::from(b - b'0');
                if mantissa < MAX_MANTISSA {
                    mantissa = mantissa * 10 + d;
                    if seen_point {
                        exp10 -= 1;
                    }
                } else {
                    // Out of room: an integer digit still scales the value, a fraction digit
                    // only makes it slightly larger.
                    if !seen_point {
                        exp10 += 1;
                    }
                    inexact |= d != 0;
                }
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return Err(QuantityError::NoDigits(s.to_owned()));
        }
        let (extra10, exp2) =
            suffix(&s[i..]).ok_or_else(|| QuantityError::UnknownSuffix(s.to_owned()))?;
        Ok(Quantity {
            negative: negative && (mantissa != 0 || inexact),
            mantissa,
            exp10: exp10.saturating_add(extra10),
            exp2,
            inexact,
        })
    }

    /// The value in units, rounded up (`"1.5"` is 2, `"100m"` is 1).
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// The value in thousandths, rounded up (`"1.5"` is 1500, `"1n"` is 1).
    pub fn milli_value(&self) -> i64 {
        self.scaled(3)
    }

    /// `value * 10^scale`, rounded away from zero, saturating at the bounds of `i64`.
    fn scaled(&self, scale: i32) -> i64 {
        let magnitude = self.magnitude(scale);
        let clamped = i64::try_from(magnitude).unwrap_or(i64::MAX);
        if self.negative { -clamped } else { clamped }
    }

    /// `|value| * 10^scale` rounded up, saturating at `u128::MAX`.
    fn magnitude(&self, scale: i32) -> u128 {
        if self.mantissa == 0 && !self.inexact {
            return 0;
        }
        let mut n = self.mantissa;
        let mut exact = !self.inexact;
        for _ in 0..self.exp2 {
            n = n.saturating_mul(2);
        }
        let e = self.exp10.saturating_add(scale);
        if e >= 0 {
            for _ in 0..e {
                n = n.saturating_mul(10);
                if n == u128::MAX {
                    return n;
                }
            }
        } else {
            for _ in 0..e.unsigned_abs() {
                if n == 0 {
                    break;
                }
                exact &= n.is_multiple_of(10);
                n /= 10;
            }
        }
        if exact { n } else { n.saturating_add(1) }
    }
}

/// Decodes a suffix into (extra power of ten, power of two).
fn suffix(s: &str) -> Option<(i32, u32)> {
    let known = match s {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let rest = s.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Exponents beyond any i64 saturate either way; clamp so the arithmetic stays small.
            let exp = rest.parse::<i64>().unwrap_or(if rest.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            });
            (i32::try_from(exp.clamp(-1000, 1000)).ok()?, 0)
        }
    };
    Some(known)
}

/// CPU in millicores from an API quantity, rounded up; unparsable quantities count as zero.
pub fn milli_value(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> i64 {
    Quantity::parse(&q.0).map_or(0, |q| q.milli_value())
}

/// A non-CPU resource in units from an API quantity, rounded up; unparsable quantities count
/// as zero.
pub fn value(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> i64 {
    Quantity::parse(&q.0).map_or(0, |q| q.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(input, value, milli_value)`; `None` means the input is rejected.
    fn check(input: &str, expected: Option<(i64, i64)>) {
        let got = Quantity::parse(input)
            .map(|q| (q.value(), q.milli_value()))
            .ok();
        assert_eq!(got, expected, "quantity {input:?}");
    }

    #[test]
    fn plain_and_decimal_numbers() {
        check("0", Some((0, 0)));
        check("1", Some((1, 1000)));
        check("+1", Some((1, 1000)));
        check("-1", Some((-1, -1000)));
        check("-0", Some((0, 0)));
        check("1.5", Some((2, 1500)));
        check("0.1", Some((1, 100)));
        check(".5", Some((1, 500)));
        check("1.", Some((1, 1000)));
        check("0.0001", Some((1, 1)));
        check("0.000", Some((0, 0)));
        check("007", Some((7, 7000)));
        check("1234567890", Some((1_234_567_890, 1_234_567_890_000)));
    }

    #[test]
    fn decimal_si_suffixes() {
        check("100m", Some((1, 100)));
        check("1000m", Some((1, 1000)));
        check("1500m", Some((2, 1500)));
        check("1m", Some((1, 1)));
        check("0.5m", Some((1, 1)));
        check("1u", Some((1, 1)));
        check("1000000u", Some((1, 1000)));
        check("1n", Some((1, 1)));
        check("1000000000n", Some((1, 1000)));
        check("1k", Some((1000, 1_000_000)));
        check("1.5k", Some((1500, 1_500_000)));
        check("1M", Some((1_000_000, 1_000_000_000)));
        check("1G", Some((1_000_000_000, 1_000_000_000_000)));
        check("2T", Some((2_000_000_000_000, 2_000_000_000_000_000)));
        check("1P", Some((10i64.pow(15), 10i64.pow(18))));
        check("1E", Some((10i64.pow(18), i64::MAX)));
        check("-100m", Some((-1, -100)));
    }

    #[test]
    fn binary_suffixes() {
        check("1Ki", Some((1024, 1_024_000)));
        check("128Mi", Some((128 << 20, (128 << 20) * 1000)));
        check("1.5Gi", Some((3 << 29, (3 << 29) * 1000)));
        check("0.5Ki", Some((512, 512_000)));
        check("1Ti", Some((1 << 40, (1 << 40) * 1000)));
        check("1Pi", Some((1 << 50, (1 << 50) * 1000)));
        check("1Ei", Some((1 << 60, i64::MAX)));
        check("8Ei", Some((i64::MAX, i64::MAX)));
        check("0.1Ki", Some((103, 102_400)));
    }

    #[test]
    fn exponents() {
        check("1e3", Some((1000, 1_000_000)));
        check("1E3", Some((1000, 1_000_000)));
        check("1e+3", Some((1000, 1_000_000)));
        check("1e-3", Some((1, 1)));
        check("15e-1", Some((2, 1500)));
        check("1.5e2", Some((150, 150_000)));
        check("1e0", Some((1, 1000)));
        check("5e-4", Some((1, 1)));
        check("1e18", Some((10i64.pow(18), i64::MAX)));
        check("1e19", Some((i64::MAX, i64::MAX)));
        check("1e999999999999", Some((i64::MAX, i64::MAX)));
        check("1e-999999999999", Some((1, 1)));
        check("0e5", Some((0, 0)));
    }

    #[test]
    fn huge_and_long_numbers() {
        check("99999999999999999999", Some((i64::MAX, i64::MAX)));
        check(
            "0.00000000000000000000000000000000000000000001",
            Some((1, 1)),
        );
        // More digits than the mantissa keeps: dropped nonzero fraction digits round up.
        check(
            "1.00000000000000000000000000000000000000001",
            Some((2, 1001)),
        );
        check(
            "123456789012345678901234567890123456789012345",
            Some((i64::MAX, i64::MAX)),
        );
    }

    #[test]
    fn rejected() {
        for input in [
            "", "m", "Mi", ".", "-", "+", "1.2.3", "1K", "1ki", "1mi", "1 ", " 1", "1e", "1e+",
            "1e1.5", "1Mii", "1MiB", "1b", "abc", "1,5", "--1", "1i", "1EE", "0x10",
        ] {
            check(input, None);
        }
    }

    #[test]
    fn api_quantity_helpers() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
        assert_eq!(milli_value(&ApiQuantity("250m".into())), 250);
        assert_eq!(value(&ApiQuantity("1Gi".into())), 1 << 30);
        assert_eq!(value(&ApiQuantity("garbage".into())), 0);
    }
}
