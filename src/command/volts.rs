//! A route's voltages as typed in chat: `[range LOW HIGH] [safe VOLTS] [slew VOLTS_PER_SECOND]`.

use std::fmt;

use super::ParseError;
use crate::catalog::VoltRange;
use crate::motion::checked_slew;

/// The voltages a route asks for. `None` means the catalogue's default range of the output and the
/// bottom of the range as the safe voltage. Whether they fit the output is the coordinator's check
/// against the catalogue's limit, the same for every source.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RouteVolts {
    pub range: Option<VoltRange>,
    pub safe: Option<f32>,
    /// Volts per second; `None` (and 0) is no slew limit.
    pub slew: Option<f32>,
}

impl fmt::Display for RouteVolts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = self.range {
            write!(f, " range {} {}", r.low, r.high)?;
        }
        if let Some(safe) = self.safe {
            write!(f, " safe {safe}")?;
        }
        if let Some(slew) = self.slew {
            write!(f, " slew {slew}")?;
        }
        Ok(())
    }
}

/// `[range LOW HIGH] [safe VOLTS] [slew RATE]` after a route's variable, in that order.
pub(super) fn parse_route_volts(text: &str) -> Result<RouteVolts, ParseError> {
    let mut volts = RouteVolts::default();
    let mut words = text.split_whitespace().peekable();
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("range")) {
        words.next();
        let (Some(low), Some(high)) = (words.next(), words.next()) else { return Err(ParseError::BadVoltage) };
        volts.range = Some(VoltRange { low: parse_volts(low)?, high: parse_volts(high)? });
    }
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("safe")) {
        words.next();
        volts.safe = Some(parse_volts(words.next().ok_or(ParseError::BadVoltage)?)?);
    }
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("slew")) {
        words.next();
        volts.slew = Some(parse_slew(words.next().unwrap_or(""))?);
    }
    match words.next() {
        None => Ok(volts),
        Some(_) => Err(ParseError::Malformed),
    }
}

/// A slew rate as typed in chat: volts per second from 0 to [`SLEW_LIMIT`](crate::motion::SLEW_LIMIT) (`2`, `0.5V/s`), or
/// `off` for 0.
pub(super) fn parse_slew(word: &str) -> Result<f32, ParseError> {
    if word.eq_ignore_ascii_case("off") {
        return Ok(0.0);
    }
    let lower = word.to_ascii_lowercase();
    let number = lower.strip_suffix("v/s").unwrap_or(&lower);
    if number.starts_with(['-', '+']) || number.ends_with(['v']) {
        return Err(ParseError::BadSlew);
    }
    let rate = parse_volts(number).map_err(|_| ParseError::BadSlew)?;
    checked_slew(f64::from(rate)).map_err(|_| ParseError::BadSlew)
}

/// A voltage as typed in chat: an optional sign, digits, an optional fraction and an optional `V`,
/// at most 12 characters, so nothing like `1e39` or `inf` becomes a number.
fn parse_volts(word: &str) -> Result<f32, ParseError> {
    let number = word.strip_suffix(['V', 'v']).unwrap_or(word);
    let digits = number.strip_prefix(['-', '+']).unwrap_or(number);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if word.len() > 12 || whole.is_empty() || !is_digits(whole) || !is_digits(fraction) {
        return Err(ParseError::BadVoltage);
    }
    number.parse::<f32>().map_err(|_| ParseError::BadVoltage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voltages_are_plain_decimals_with_an_optional_sign_and_unit() {
        for (word, volts) in
            [("0.5", 0.5), ("-2", -2.0), ("+1V", 1.0), ("0.25v", 0.25), ("1.", 1.0), ("-1000", -1000.0)]
        {
            assert_eq!(parse_volts(word), Ok(volts), "{word}");
        }
        for word in ["", "V", "-", ".5", "1e3", "inf", "NaN", "1.2.3", "0x1", "1,5", "--1", "1234567890123"] {
            assert_eq!(parse_volts(word), Err(ParseError::BadVoltage), "{word}");
        }
    }

    #[test]
    fn range_comes_before_safe_and_nothing_follows() {
        let range = |low, high| Some(VoltRange { low, high });
        assert_eq!(parse_route_volts(""), Ok(RouteVolts::default()));
        assert_eq!(
            parse_route_volts("RANGE 1 0v SAFE 1"),
            Ok(RouteVolts { range: range(1.0, 0.0), safe: Some(1.0), slew: None })
        );
        assert_eq!(parse_route_volts(" safe -0.5 "), Ok(RouteVolts { range: None, safe: Some(-0.5), slew: None }));
        assert_eq!(parse_route_volts("slew 2"), Ok(RouteVolts { range: None, safe: None, slew: Some(2.0) }));
        assert_eq!(parse_route_volts("safe 0.5 range 0 1"), Err(ParseError::Malformed));
        assert_eq!(parse_route_volts("range 0 1 please"), Err(ParseError::Malformed));
        assert_eq!(parse_route_volts("range 0"), Err(ParseError::BadVoltage));
        assert_eq!(parse_route_volts("safe"), Err(ParseError::BadVoltage));
    }
}
