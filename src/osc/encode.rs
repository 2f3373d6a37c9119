//! OSC messages for the Max patches (`/cv`, `/routing`) and generic receivers (`/lzx/…`).

use std::sync::Arc;

use rosc::{OscMessage, OscType};

use super::OscFormat;
use crate::catalog::{Catalog, Output, Parameter, Variable};
use crate::state::Route;

/// The address of a value for the Max patches: `/cv ,sfsisi`.
pub const CV_ADDR: &str = "/cv";
/// The address of a routing change: `/routing ,sss add output variable` or `,ss remove output`.
pub const ROUTING_ADDR: &str = "/routing";
/// The address of the liveness beat: `/cvbot/heartbeat ,si instance seq`.
pub const HEARTBEAT_ADDR: &str = "/cvbot/heartbeat";

/// Builds the OSC messages; pure, so the argument lists are tested without sockets. Every `/cv`
/// voltage it builds is inside its output's hard limit from the catalogue, whatever the route says:
/// the last line of defence behind the checks at every source.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub format: OscFormat,
    catalog: Arc<Catalog>,
}

/// A `/cv` message and whether its voltage had to be brought inside the output's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Cv {
    pub message: OscMessage,
    pub clamped: bool,
}

impl Encoder {
    pub fn new(format: OscFormat, catalog: Arc<Catalog>) -> Encoder {
        Encoder { format, catalog }
    }

    fn value_max(&self) -> u8 {
        self.catalog.value_max()
    }

    /// `/cv ,sfsisi route voltage module instance parameter value`. The voltage is always a float.
    pub fn cv(&self, output: &Output, route: &Route, value: u8) -> Cv {
        let voltage = route.range.voltage(value, self.value_max());
        self.cv_with_voltage(output, &route.variable, voltage, value)
    }

    /// `/cv` carrying `voltage`: a step of a moving output (slew, ramp) on its way to `value`'s.
    pub fn cv_at(&self, output: &Output, route: &Route, voltage: f32, value: u8) -> Cv {
        self.cv_with_voltage(output, &route.variable, voltage, value)
    }

    /// The voltage `position` (a chat value, possibly between two: a ramp's) stands for on `route`.
    /// Exactly [`crate::catalog::VoltRange::voltage`] at whole values, so a ramp ends where a jump lands.
    pub fn voltage_at(&self, route: &Route, position: f32) -> f32 {
        let max = f32::from(self.value_max().max(1));
        let position = position.clamp(0.0, max);
        if position.fract() == 0.0 {
            // A whole chat value within 0..=max, so it fits a u8.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return route.range.voltage(position as u8, self.value_max());
        }
        route.range.low + position / max * (route.range.high - route.range.low)
    }

    /// `/es9out/1 ,f voltage`: the per-output form (`esx8cv#2.out#3` is `/esx8cv/2/out/3`), inside
    /// the output's limit like every `/cv`.
    pub fn output_at(&self, output: &Output, voltage: f32) -> Cv {
        let (clamped_voltage, clamped) = self.limited(output, voltage);
        let addr = format!("/{}", output.as_str().replace(['#', '.'], "/"));
        Cv { message: OscMessage { addr, args: vec![OscType::Float(clamped_voltage)] }, clamped }
    }

    /// `/cvbot/heartbeat ,si instance seq`; `seq` wraps within OSC's 32-bit integers.
    pub fn heartbeat(instance: &str, seq: u64) -> OscMessage {
        let seq = i32::try_from(seq & 0x7fff_ffff).unwrap_or_default();
        OscMessage {
            addr: HEARTBEAT_ADDR.to_owned(),
            args: vec![OscType::String(instance.to_owned()), OscType::Int(seq)],
        }
    }

    /// `/cv` carrying the route's safe voltage (emergency stop, clear).
    pub fn cv_safe(&self, output: &Output, route: &Route) -> Cv {
        let value = self.safe_value(route);
        self.cv_with_voltage(output, &route.variable, route.safe, value)
    }

    /// Where the safe voltage sits in the route's range, from 0 to 1.
    fn safe_fraction(route: &Route) -> f32 {
        let span = route.range.high - route.range.low;
        let t = if span == 0.0 { 0.0 } else { (route.safe - route.range.low) / span };
        if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) }
    }

    /// The chat value nearest the safe voltage, shown beside it.
    fn safe_value(&self, route: &Route) -> u8 {
        // Truncation is intended: the fraction is within 0..=1, so the product fits a u8.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let value = (Self::safe_fraction(route) * f32::from(self.value_max())).round() as u8;
        value
    }

    /// `voltage` inside `output`'s limit, and whether it had to be brought there. Compared bit for
    /// bit: a NaN is never inside the limit, so it counts as clamped.
    fn limited(&self, output: &Output, voltage: f32) -> (f32, bool) {
        let clamped_voltage = self.catalog.output_limit(output).clamp(voltage);
        (clamped_voltage, clamped_voltage.to_bits() != voltage.to_bits())
    }

    fn cv_with_voltage(&self, output: &Output, variable: &Variable, voltage: f32, value: u8) -> Cv {
        let (clamped_voltage, clamped) = self.limited(output, voltage);
        let message = OscMessage {
            addr: CV_ADDR.to_owned(),
            args: vec![
                OscType::String(output.to_string()),
                OscType::Float(clamped_voltage),
                OscType::String(variable.module().to_owned()),
                OscType::Int(i32::from(variable.instance())),
                OscType::String(variable.parameter().to_string()),
                OscType::Int(i32::from(value)),
            ],
        };
        Cv { message, clamped }
    }

    /// `/routing ,sss add output variable`.
    pub fn route_add(output: &Output, variable: &Variable) -> OscMessage {
        OscMessage {
            addr: ROUTING_ADDR.to_owned(),
            args: vec![
                OscType::String("add".into()),
                OscType::String(output.to_string()),
                OscType::String(variable.to_string()),
            ],
        }
    }

    /// `/routing ,ss remove output`.
    pub fn route_remove(output: &Output) -> OscMessage {
        OscMessage {
            addr: ROUTING_ADDR.to_owned(),
            args: vec![OscType::String("remove".into()), OscType::String(output.to_string())],
        }
    }

    /// `/lzx/{module}/{instance}/{parameter} ,f normalized` for a chat value.
    pub fn address(&self, variable: &Variable, value: u8) -> OscMessage {
        self.address_at(variable, f32::from(value))
    }

    /// The `/lzx` form of `position`, a chat value possibly between two (a ramp's).
    pub fn address_at(&self, variable: &Variable, position: f32) -> OscMessage {
        let max = f32::from(self.value_max().max(1));
        Self::address_fraction(variable, position.clamp(0.0, max) / max)
    }

    /// The `/lzx` form of a route's safe voltage: where it sits in the route's range.
    pub fn address_safe(route: &Route) -> OscMessage {
        Self::address_fraction(&route.variable, Self::safe_fraction(route))
    }

    /// `/lzx/{module}/{instance}/{parameter} ,f t` with `t` from 0 to 1. OSC addresses may not
    /// contain `#`, so a numbered parameter such as `thru#2` becomes `thru/2`.
    fn address_fraction(variable: &Variable, t: f32) -> OscMessage {
        let parameter = match variable.parameter() {
            Parameter::Named(n) => n.replace('#', "/"),
            Parameter::InputJack(k) => format!("inputJack/{k}"),
        };
        OscMessage {
            addr: format!("/lzx/{}/{}/{parameter}", variable.module(), variable.instance()),
            args: vec![OscType::Float(t)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::VoltRange;

    fn enc() -> Encoder {
        Encoder::new(OscFormat::BOTH, Arc::new(Catalog::builtin()))
    }

    #[test]
    fn cv_message_has_the_peer_compatible_argument_list() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let route = Route::new(c.parse_variable("doorway#1.threshold").expect("var"), VoltRange::LZX);
        let Cv { message: msg, clamped } = enc().cv(&out, &route, 127);
        assert!(!clamped);
        assert_eq!(msg.addr, "/cv");
        assert_eq!(
            msg.args,
            vec![
                OscType::String("es9out#1".into()),
                OscType::Float(1.0),
                OscType::String("doorway".into()),
                OscType::Int(1),
                OscType::String("threshold".into()),
                OscType::Int(127),
            ]
        );
        assert_eq!(enc().cv(&out, &route, 0).message.args[1], OscType::Float(0.0), "zero is still a float");
    }

    #[test]
    fn safe_value_message_carries_the_bottom_of_the_range() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let route = Route::new(c.parse_variable("doorway#1.gain").expect("var"), VoltRange { low: 0.8, high: 0.2 });
        let Cv { message, clamped } = enc().cv_safe(&out, &route);
        assert!(!clamped);
        assert_eq!(message.args[1], OscType::Float(0.8));
        assert_eq!(message.args[5], OscType::Int(0));
        assert_eq!(Encoder::address_safe(&Route { safe: 0.5, ..route }).args, vec![OscType::Float(0.5)]);
    }

    #[test]
    fn no_voltage_leaves_the_output_limit_even_when_a_route_would_send_it() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let variable = c.parse_variable("doorway#1.gain").expect("var");
        // Routes no check lets in, built by hand as a future bug might.
        for (range, safe) in [((-1000.0, 1000.0), 1000.0), ((0.0, 3e38), 3e38), ((f32::NAN, 1.0), f32::NAN)] {
            let route =
                Route { variable: variable.clone(), range: VoltRange { low: range.0, high: range.1 }, safe, slew: 0.0 };
            let wanted = [route.range.voltage(0, 127), route.range.voltage(127, 127), safe];
            let sent = [enc().cv(&out, &route, 0), enc().cv(&out, &route, 127), enc().cv_safe(&out, &route)];
            for (want, cv) in wanted.into_iter().zip(sent) {
                let OscType::Float(v) = cv.message.args[1] else { panic!("a float") };
                assert!((0.0..=1.0).contains(&v), "{v} for {range:?}");
                assert_eq!(cv.clamped, !(0.0..=1.0).contains(&want), "{want} for {range:?} is counted when clamped");
            }
        }
    }

    #[test]
    fn per_output_addresses_heartbeats_and_ramp_steps() {
        let c = Catalog::builtin();
        let es9 = c.output("es9out#1").expect("output");
        let esx = c.output("esx8cv#2.out#3").expect("output");
        assert_eq!(
            enc().output_at(&es9, 0.5).message,
            OscMessage { addr: "/es9out/1".into(), args: vec![OscType::Float(0.5)] }
        );
        assert_eq!(enc().output_at(&esx, 0.5).message.addr, "/esx8cv/2/out/3");
        let over = enc().output_at(&es9, 1000.0);
        assert!(
            over.clamped && over.message.args[0] != OscType::Float(1000.0),
            "the per-output form keeps the limit too"
        );
        let beat = Encoder::heartbeat("bot-001", 7);
        assert_eq!(
            (beat.addr.as_str(), beat.args),
            (HEARTBEAT_ADDR, vec![OscType::String("bot-001".into()), OscType::Int(7)])
        );
        let route = Route::new(c.parse_variable("doorway#1.gain").expect("var"), VoltRange { low: -5.0, high: 5.0 });
        for value in [0u8, 1, 64, 89, 127] {
            assert_eq!(
                enc().voltage_at(&route, f32::from(value)),
                route.range.voltage(value, 127),
                "whole values land exactly"
            );
        }
        assert!((enc().voltage_at(&route, 63.5) - 0.0).abs() < 1e-6, "half way between is the middle");
        assert_eq!(enc().address_at(&route.variable, 63.5).args, vec![OscType::Float(0.5)]);
    }

    #[test]
    fn address_form_has_no_hash_signs() {
        let c = Catalog::builtin();
        let msg = enc().address(&c.parse_variable("passage#2.thru#3").expect("var"), 127);
        assert_eq!(msg.addr, "/lzx/passage/2/thru/3");
        assert_eq!(msg.args, vec![OscType::Float(1.0)]);
        let jack = enc().address(&c.parse_variable("arch#1.inputJack#4").expect("var"), 0);
        assert_eq!(jack.addr, "/lzx/arch/1/inputJack/4");
    }
}
