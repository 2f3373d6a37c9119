//! The gate: who may run a command, and how often.
//!
//! Pure: time comes in as a parameter (`now: Instant`), nothing is read from the clock, no I/O. It knows
//! senders and commands, not where they came from (Twitch, terminal, HTTP) or what applying them does.
//! Rate limiting uses governor's GCRA with an injected clock, so tests drive time by hand.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::command::Command;

/// Who sent a chat line, as far as permissions go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // Badges are independent flags; Twitch sends any combination.
pub struct Sender {
    /// Lower-case login name; the cooldown key.
    pub login: String,
    /// Platform user id (Twitch's numeric id) when known; `ADMIN_USERS` may list ids.
    pub user_id: Option<String>,
    pub broadcaster: bool,
    pub moderator: bool,
    pub vip: bool,
    pub subscriber: bool,
    /// The local terminal operator (and the HTTP admin token holder): always an admin.
    pub operator: bool,
}

impl Sender {
    /// A plain viewer.
    pub fn viewer(login: &str) -> Sender {
        Sender { login: login.to_ascii_lowercase(), ..Sender::default() }
    }

    /// The person at the terminal running the bot.
    pub fn operator(login: &str) -> Sender {
        Sender { login: login.to_ascii_lowercase(), operator: true, ..Sender::default() }
    }
}

/// Why the gate refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("admin commands need broadcaster, moderator or ADMIN_USERS")]
    NotAdmin,
    #[error("per-user cooldown")]
    Cooldown,
    #[error("global command rate limit")]
    GlobalLimit,
}

impl Denial {
    pub fn label(self) -> &'static str {
        match self {
            Self::NotAdmin => "not_admin",
            Self::Cooldown => "cooldown",
            Self::GlobalLimit => "global_limit",
        }
    }
}

/// The gate's settings, from the validated configuration.
#[derive(Debug, Clone)]
pub struct GatePolicy {
    /// Minimum time between two commands of one viewer (`RATE_LIMIT_MS`); zero turns it off.
    pub user_cooldown: Duration,
    /// Viewer commands per second across all users (`GLOBAL_RATE_LIMIT`); zero turns it off.
    pub global_per_second: u32,
    /// Lower-case logins and numeric user ids with admin rights (`ADMIN_USERS`).
    pub admin_users: HashSet<String>,
}

/// A governor clock that reads the time the gate was last told, so the gate never reads the clock.
#[derive(Debug, Clone, Default)]
struct InjectedClock(Arc<AtomicU64>);

impl Clock for InjectedClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

type KeyedLimiter = RateLimiter<String, HashMapStateStore<String>, InjectedClock, NoOpMiddleware<Duration>>;
type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, InjectedClock, NoOpMiddleware<Duration>>;

/// Checks permissions and rate limits. Admins (broadcaster, moderators, listed users, the operator)
/// are never rate limited: an emergency stop must go through during a flood.
#[derive(Debug)]
pub struct Gate {
    admin_users: HashSet<String>,
    clock: InjectedClock,
    origin: Instant,
    per_user: Option<KeyedLimiter>,
    global: Option<DirectLimiter>,
    checks_since_prune: u32,
}

/// How many checks between prunes of idle users' limiter state, which bounds its memory.
const PRUNE_EVERY: u32 = 4096;

impl Gate {
    /// `origin` is any instant not after the first `now` passed to [`Gate::check`].
    pub fn new(policy: &GatePolicy, origin: Instant) -> Gate {
        let clock = InjectedClock::default();
        let per_user = cooldown_quota(policy.user_cooldown)
            .map(|q| RateLimiter::new(q, HashMapStateStore::default(), clock.clone()));
        let global = NonZeroU32::new(policy.global_per_second)
            .map(|n| RateLimiter::direct_with_clock(Quota::per_second(n), clock.clone()));
        let admin_users = policy.admin_users.iter().map(|u| u.to_ascii_lowercase()).collect();
        Gate { admin_users, clock, origin, per_user, global, checks_since_prune: 0 }
    }

    /// True when `sender` may run admin commands.
    pub fn is_admin(&self, sender: &Sender) -> bool {
        sender.operator
            || sender.broadcaster
            || sender.moderator
            // An all-digit entry is a user id only: Twitch logins may be all digits, and a viewer whose
            // login happens to equal an admin's id must not become an admin.
            || (self.admin_users.contains(&sender.login) && !is_user_id(&sender.login))
            || sender.user_id.as_ref().is_some_and(|id| self.admin_users.contains(id))
    }

    /// Decides whether `command` from `sender` at `now` may go through; a pass uses up quota.
    pub fn check(&mut self, sender: &Sender, command: &Command, now: Instant) -> Result<(), Denial> {
        let admin = self.is_admin(sender);
        if command.is_admin() && !admin {
            return Err(Denial::NotAdmin);
        }
        // A question changes nothing, so it uses no quota; its repeats are held back where it is answered.
        if admin || command.is_question() {
            return Ok(());
        }
        let nanos = u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        self.clock.0.store(nanos, Ordering::Relaxed);
        if let Some(per_user) = &self.per_user {
            // Checked before the global cap so one spamming viewer cannot eat everyone's quota.
            if per_user.check_key(&sender.login).is_err() {
                return Err(Denial::Cooldown);
            }
            self.checks_since_prune += 1;
            if self.checks_since_prune >= PRUNE_EVERY {
                self.checks_since_prune = 0;
                per_user.retain_recent();
            }
        }
        if let Some(global) = &self.global
            && global.check().is_err()
        {
            return Err(Denial::GlobalLimit);
        }
        Ok(())
    }
}

fn is_user_id(entry: &str) -> bool {
    !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit())
}

/// One command per `cooldown`, no burst.
fn cooldown_quota(cooldown: Duration) -> Option<Quota> {
    if cooldown.is_zero() {
        return None;
    }
    Quota::with_period(cooldown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::command::parse;

    fn gate(cooldown_ms: u64, global: u32, admins: &[&str], origin: Instant) -> Gate {
        let policy = GatePolicy {
            user_cooldown: Duration::from_millis(cooldown_ms),
            global_per_second: global,
            admin_users: admins.iter().map(|s| (*s).to_owned()).collect(),
        };
        Gate::new(&policy, origin)
    }

    fn cmd(line: &str) -> Command {
        parse(line, &Catalog::builtin()).expect("valid test command")
    }

    #[test]
    fn viewers_cannot_run_admin_commands_but_roles_and_the_list_can() {
        let t0 = Instant::now();
        let mut g = gate(1000, 50, &["trusted_friend", "12345"], t0);
        let clear = cmd("!admin clear");
        assert_eq!(g.check(&Sender::viewer("rando"), &clear, t0), Err(Denial::NotAdmin));
        let vip = Sender { vip: true, subscriber: true, ..Sender::viewer("fancy") };
        assert_eq!(g.check(&vip, &clear, t0), Err(Denial::NotAdmin));
        for sender in [
            Sender { moderator: true, ..Sender::viewer("mod") },
            Sender { broadcaster: true, ..Sender::viewer("streamer") },
            Sender::viewer("Trusted_Friend"),
            Sender { user_id: Some("12345".into()), ..Sender::viewer("renamed") },
            Sender::operator("console"),
        ] {
            assert_eq!(g.check(&sender, &clear, t0), Ok(()), "{sender:?}");
        }
    }

    #[test]
    fn a_numeric_admin_entry_matches_the_user_id_not_a_login_spelled_the_same() {
        let t0 = Instant::now();
        let mut g = gate(1000, 50, &["12345"], t0);
        let clear = cmd("!admin clear");
        let impostor = Sender { user_id: Some("999".into()), ..Sender::viewer("12345") };
        assert_eq!(g.check(&impostor, &clear, t0), Err(Denial::NotAdmin));
        let real = Sender { user_id: Some("12345".into()), ..Sender::viewer("someone") };
        assert_eq!(g.check(&real, &clear, t0), Ok(()));
    }

    #[test]
    fn cooldown_applies_per_user() {
        let t0 = Instant::now();
        let mut g = gate(1000, 0, &[], t0);
        let set = cmd("doorway#1.threshold: 89");
        let alice = Sender::viewer("alice");
        let bob = Sender::viewer("bob");
        assert_eq!(g.check(&alice, &set, t0), Ok(()));
        assert_eq!(g.check(&alice, &set, t0 + Duration::from_millis(500)), Err(Denial::Cooldown));
        assert_eq!(g.check(&bob, &set, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(g.check(&alice, &set, t0 + Duration::from_millis(999)), Err(Denial::Cooldown));
        assert_eq!(g.check(&alice, &set, t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn global_cap_limits_commands_per_second_across_users() {
        let t0 = Instant::now();
        let mut g = gate(0, 10, &[], t0);
        let set = cmd("doorway#1.threshold: 89");
        let passed = (0..100).filter(|i| g.check(&Sender::viewer(&format!("u{i}")), &set, t0).is_ok()).count();
        assert_eq!(passed, 10);
        // A second later the budget has refilled.
        let later = t0 + Duration::from_secs(1);
        let passed = (0..100).filter(|i| g.check(&Sender::viewer(&format!("v{i}")), &set, later).is_ok()).count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn admins_are_never_rate_limited() {
        let t0 = Instant::now();
        let mut g = gate(1000, 1, &[], t0);
        let m = Sender { moderator: true, ..Sender::viewer("mod") };
        for _ in 0..100 {
            assert_eq!(g.check(&m, &cmd("!admin emergency stop"), t0), Ok(()));
            assert_eq!(g.check(&m, &cmd("doorway#1.gain: 3"), t0), Ok(()));
        }
    }

    #[test]
    fn questions_use_no_quota_and_only_admins_may_ask_for_the_admin_commands() {
        let t0 = Instant::now();
        let mut g = gate(1000, 1, &[], t0);
        let ann = Sender::viewer("ann");
        for line in ["!cv help", "!cv list", "!cv list doorway", "!cv help"] {
            assert_eq!(g.check(&ann, &cmd(line), t0), Ok(()), "{line}");
        }
        assert_eq!(g.check(&ann, &cmd("doorway#1.gain: 3"), t0), Ok(()), "the cooldown and the cap are untouched");
        assert_eq!(g.check(&ann, &cmd("!admin help"), t0), Err(Denial::NotAdmin));
        let m = Sender { moderator: true, ..Sender::viewer("mod") };
        assert_eq!(g.check(&m, &cmd("!admin help"), t0), Ok(()));
    }

    #[test]
    fn a_cooldown_of_zero_turns_it_off() {
        let t0 = Instant::now();
        let mut g = gate(0, 0, &[], t0);
        let a = Sender::viewer("a");
        for _ in 0..1000 {
            assert_eq!(g.check(&a, &cmd("doorway#1.gain: 3"), t0), Ok(()));
        }
    }
}
