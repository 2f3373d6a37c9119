//! The clock rules a decoded event must meet before it is applied.

use super::DropReason;
use crate::state::{Event, Hlc};

/// Where a decoded event came from: pub/sub events must be fresh when signed, while registers in the
/// state hash are old by nature (a route set an hour ago is still the route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    PubSub,
    StateHash,
}

/// The time rules a decoded event must meet before it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// A stamp further ahead of our clock than this is refused (`MAX_CLOCK_SKEW_MS`).
    pub max_skew_ms: u64,
    /// With signing on, a pub/sub event older than this is refused as a replay (`EVENT_MAX_AGE_MS`).
    pub max_age_ms: Option<u64>,
}

/// How far ahead of `now_ms` an event claims to be (negative: behind), from the later of its
/// hybrid-clock stamp and its wall-clock `timestamp`.
pub fn ahead_ms(event: &Event, now_ms: u64) -> i64 {
    let claimed = Hlc::wall_ms(event.stamp.hlc).max(event.wall_ms);
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    signed(claimed).saturating_sub(signed(now_ms))
}

/// Checks a decoded event against the clock: never a stamp that would win every later write (far
/// future), and with signing on never a stale pub/sub event (a captured one, replayed).
pub fn admit(event: &Event, origin: Origin, now_ms: u64, rules: Admission) -> Result<(), DropReason> {
    let ahead = ahead_ms(event, now_ms);
    if ahead > i64::try_from(rules.max_skew_ms).unwrap_or(i64::MAX) {
        return Err(DropReason::ClockSkew);
    }
    if let (Origin::PubSub, Some(max_age)) = (origin, rules.max_age_ms)
        && now_ms.saturating_sub(Hlc::wall_ms(event.stamp.hlc)) > max_age
    {
        return Err(DropReason::StaleSignature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{EventKind, Stamp};

    #[test]
    fn admission_refuses_far_future_stamps_and_stale_signed_pubsub_events() {
        let now = 1_800_000_000_000u64;
        let at = |wall_ms: u64| Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(wall_ms) + 1, instance: "b".into() },
            wall_ms,
            user: "u".into(),
            kind: EventKind::ClearAll,
        };
        let open = Admission { max_skew_ms: 10_000, max_age_ms: None };
        let signed = Admission { max_age_ms: Some(60_000), ..open };
        assert_eq!(admit(&at(now + 10_000), Origin::PubSub, now, open), Ok(()));
        assert_eq!(admit(&at(now + 10_001), Origin::PubSub, now, open), Err(DropReason::ClockSkew));
        assert_eq!(admit(&at(now + 20_000), Origin::StateHash, now, open), Err(DropReason::ClockSkew));
        // The saturating case: a timestamp of 2^53 ms, as one hostile event sent.
        let huge = Event { stamp: Stamp { hlc: u64::MAX, instance: "b".into() }, ..at(now) };
        assert_eq!(admit(&huge, Origin::PubSub, now, open), Err(DropReason::ClockSkew));
        // A plausible stamp with a far-future display timestamp is refused too.
        let lying = Event { wall_ms: now + 3_600_000, ..at(now) };
        assert_eq!(admit(&lying, Origin::PubSub, now, open), Err(DropReason::ClockSkew));
        assert_eq!(admit(&at(now - 3_600_000), Origin::PubSub, now, open), Ok(()), "old is fine unsigned");
        assert_eq!(admit(&at(now - 60_001), Origin::PubSub, now, signed), Err(DropReason::StaleSignature));
        assert_eq!(admit(&at(now - 59_000), Origin::PubSub, now, signed), Ok(()));
        assert_eq!(admit(&at(now - 3_600_000), Origin::StateHash, now, signed), Ok(()), "registers are old by nature");
        assert_eq!(ahead_ms(&at(now + 1500), now), 1500);
        assert_eq!(ahead_ms(&at(now - 1500), now), -1500);
    }
}
