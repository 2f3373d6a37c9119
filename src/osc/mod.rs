//! The OSC output: turns state changes into UDP datagrams for Max/MSP (or any OSC receiver).
//!
//! The only module that knows OSC addresses and argument lists. [`encode`] builds the messages and
//! holds every voltage inside its output's limit (pure); [`send`] puts them on the wire, one per
//! datagram or gathered into bundles; [`stage`] is the coordinator's first observer, called under
//! its lock with each change and the state after it, so a value that jumps leaves in the same call
//! that applied the command: no queue, no mirror, nothing to fall behind. Outputs that move (a slew
//! limit, a timed ramp) are stepped by [`OscStage::tick`] at a fixed tick, under the same lock. A
//! failed send is counted and logged, never fatal.

mod counters;
pub mod encode;
mod send;
pub mod stage;

pub use counters::OscCounters;
pub use encode::{CV_ADDR, Cv, Encoder, HEARTBEAT_ADDR, ROUTING_ADDR};
pub use stage::{OscStage, StageOptions};

/// Which messages to send (`OSC_FORMAT`): any of the three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OscFormat {
    /// `/cv` and `/routing`, as the existing Max/MSP patches expect.
    pub max: bool,
    /// `/lzx/{module}/{instance}/{parameter} f` for every variable, routed or not.
    pub address: bool,
    /// `/es9out/1 f`: one address per routed output, carrying its voltage.
    pub output: bool,
}

impl OscFormat {
    pub const MAX: OscFormat = OscFormat { max: true, address: false, output: false };
    pub const ADDRESS: OscFormat = OscFormat { max: false, address: true, output: false };
    pub const OUTPUT: OscFormat = OscFormat { max: false, address: false, output: true };
    pub const BOTH: OscFormat = OscFormat { max: true, address: true, output: false };

    /// `max`, `address`, `output`, `both` (max and address), or several joined by commas
    /// (`max,output`); the error names what is not one of them.
    pub fn parse(text: &str) -> Result<OscFormat, String> {
        let mut format = OscFormat { max: false, address: false, output: false };
        for word in text.split(',').map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "max" => format.max = true,
                "address" => format.address = true,
                "output" => format.output = true,
                "both" => (format.max, format.address) = (true, true),
                _ => {
                    return Err(format!(
                        "{word:?} is not one of max, address, output, both (or several, comma-separated)"
                    ));
                }
            }
        }
        Ok(format)
    }

    /// The forms on, as `OSC_FORMAT` would name them (`max`, `both`, `max,output`).
    fn names(self) -> Vec<&'static str> {
        if self == OscFormat::BOTH {
            return vec!["both"];
        }
        [(self.max, "max"), (self.address, "address"), (self.output, "output")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

impl std::fmt::Display for OscFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_combine() {
        assert_eq!(OscFormat::parse("max"), Ok(OscFormat::MAX));
        assert_eq!(OscFormat::parse("BOTH"), Ok(OscFormat::BOTH));
        assert_eq!(OscFormat::parse("output"), Ok(OscFormat::OUTPUT));
        assert_eq!(OscFormat::parse("max, output"), Ok(OscFormat { max: true, address: false, output: true }));
        assert!(OscFormat::parse("midi").is_err_and(|e| e.contains("\"midi\"")));
        assert!(OscFormat::parse("").is_err());
        assert!(OscFormat::parse("max,").is_err());
        for text in ["max", "address", "output", "both", "max,output", "address,output"] {
            assert_eq!(OscFormat::parse(text).map(|f| f.to_string()).as_deref(), Ok(text), "round trip");
        }
    }
}
