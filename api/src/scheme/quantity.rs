//! Kubernetes resource quantities ("100m", "2", "1.5", "128Mi", "1G", "1e3") as integers: CPU in
//! millicores, memory in bytes.
//!
//! Hand-written because the format is Kubernetes' own (binary and decimal SI suffixes plus
//! exponents) and no crate reads it; the arithmetic is exact (integers, never floating point),
//! rounding up as Kubernetes' `MilliValue` and `Value` do.

/// What Kubernetes says about a malformed quantity.
pub(super) const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A quantity in thousandths of a unit, rounded up: CPU as millicores ("100m" -> 100, "2" -> 2000).
pub fn parse_quantity_milli(s: &str) -> Result<i64, String> {
    parse_scaled(s, 3)
}

/// A quantity in units, rounded up: memory as bytes ("128Mi" -> 134217728, "1G" -> 1000000000).
pub fn parse_quantity_bytes(s: &str) -> Result<i64, String> {
    parse_scaled(s, 0)
}

/// The quantity times 10^scale, rounded up (towards positive infinity).
fn parse_scaled(s: &str, scale: i32) -> Result<i64, String> {
    let bad = || QUANTITY_FORMAT.to_string();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(bad());
    }
    let (binary_exp, mut decimal_exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E']).ok_or_else(bad)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            (
                0,
                exp.parse::<i32>()
                    .map_err(|_| "quantity exponent is too large".to_string())?,
            )
        }
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let too_large = || format!("quantity {s:?} is too large");
    if digits.len() > 38 {
        return Err(too_large());
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    decimal_exp = decimal_exp
        .checked_sub(frac_part.len() as i32)
        .and_then(|e| e.checked_add(scale))
        .ok_or_else(too_large)?;
    let mut value = mantissa
        .checked_mul(1u128 << binary_exp)
        .ok_or_else(too_large)?;
    let magnitude = if mantissa == 0 {
        0
    } else if decimal_exp >= 0 {
        for _ in 0..decimal_exp {
            value = value.checked_mul(10).ok_or_else(too_large)?;
        }
        value
    } else if -decimal_exp > 38 {
        // a positive amount smaller than one unit rounds up to one (and a negative one to zero)
        u128::from(!negative)
    } else {
        let divisor = 10u128.pow((-decimal_exp) as u32);
        let (q, r) = (value / divisor, value % divisor);
        // rounding towards positive infinity: up for positive amounts, down for negative ones
        if r != 0 && !negative {
            q + 1
        } else {
            q
        }
    };
    let magnitude = i64::try_from(magnitude).map_err(|_| too_large())?;
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli() {
        fn check(input: &str, expected: Result<i64, ()>) {
            assert_eq!(
                parse_quantity_milli(input).map_err(|_| ()),
                expected,
                "{input}"
            );
        }
        check("100m", Ok(100));
        check("2", Ok(2000));
        check("1.5", Ok(1500));
        check("0.1", Ok(100));
        check(".5", Ok(500));
        check("5.", Ok(5000));
        check("1e3", Ok(1_000_000));
        check("1E-3", Ok(1));
        check("0.0001", Ok(1)); // rounded up
        check("1n", Ok(1));
        check("+2", Ok(2000));
        check("-1", Ok(-1000));
        check("0", Ok(0));
        check("1k", Ok(1_000_000));
        check("", Err(()));
        check("m", Err(()));
        check(".", Err(()));
        check("1.2.3", Err(()));
        check("abc", Err(()));
        check("1x", Err(()));
        check("1e", Err(()));
        check("1 ", Err(()));
        check("1Gi", Ok(1_073_741_824_000));
        check("100E", Err(())); // too large for i64 millis
        check("99999999999999999999999999999999999999999", Err(()));
    }

    #[test]
    fn bytes() {
        fn check(input: &str, expected: Result<i64, ()>) {
            assert_eq!(
                parse_quantity_bytes(input).map_err(|_| ()),
                expected,
                "{input}"
            );
        }
        check("128Mi", Ok(134_217_728));
        check("1G", Ok(1_000_000_000));
        check("1Ki", Ok(1024));
        check("1.5Gi", Ok(1_610_612_736));
        check("1e3", Ok(1000));
        check("100m", Ok(1)); // rounded up
        check("512", Ok(512));
        check("1Ei", Ok(1 << 60));
        check("8Ei", Err(()));
        check("1Mb", Err(()));
        check("1KI", Err(()));
    }
}
