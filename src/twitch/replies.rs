//! Replies in Twitch chat: a bounded queue, a throttle that keeps the bot inside Twitch's message limits,
//! splitting at 500 characters, and the task that sends.
//!
//! twitch-irc does no outgoing rate limiting, so this is the only thing between a busy show and a bot
//! that Twitch silences. [`ReplyThrottle`] and [`split`] are pure (time injected). Knows nothing of
//! commands, the coordinator or State: it says text in a channel.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use twitch_irc::TwitchIRCClient;
use twitch_irc::login::LoginCredentials;
use twitch_irc::transport::Transport;

use super::TwitchCounters;
use crate::stats::LogThrottle;

/// Twitch's limit window, plus one second of slack: our clock starts when we send, Twitch's when the
/// message arrives, and a limit overrun loses messages for everyone watching.
pub const WINDOW: Duration = Duration::from_secs(31);
/// Messages per window for an ordinary account.
pub const NORMAL_LIMIT: usize = 20;
/// Messages per window where the bot is a moderator or the broadcaster (seen in USERSTATE).
pub const ELEVATED_LIMIT: usize = 100;
/// Slots an optional reply (a viewer's error) must leave free, so admins' confirmations keep getting out.
pub const ADMIN_RESERVE: usize = 5;
/// Twitch rejects longer messages.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Parts of one reply at most; a longer reply ends with `…` (a long route list: see `/api/state`).
pub const MAX_PARTS: usize = 3;
/// Replies waiting to be sent. When full, a new reply is dropped and counted (`replies_dropped`): the
/// queue never grows, and a reply that would wait minutes is no use to a moderator anyway.
pub const REPLY_QUEUE: usize = 32;
/// A reply still waiting for a free slot after this long is dropped and counted.
pub const MAX_REPLY_AGE: Duration = Duration::from_secs(60);
/// How long one send may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a reply is for, which decides what happens when the rate limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// An admin's confirmation or answer: waits for a free slot (up to [`MAX_REPLY_AGE`]).
    Admin,
    /// A viewer's error (`CHAT_REPLY_ERRORS`): sent only if slots beyond [`ADMIN_RESERVE`] are free now.
    Viewer,
}

/// One reply to say in one channel.
#[derive(Debug, Clone)]
pub struct Reply {
    pub channel: String,
    pub text: String,
    pub priority: Priority,
    pub queued_at: Instant,
}

/// A sliding window over the bot's own messages: across all channels, as Twitch counts them per account.
#[derive(Debug, Default)]
pub struct ReplyThrottle {
    sent: VecDeque<Instant>,
}

impl ReplyThrottle {
    /// Takes a slot at `now` if one is free under the limit for a channel where the bot is `elevated`
    /// (or not), keeping `reserve` slots free. Otherwise returns when to try again.
    pub fn try_acquire(&mut self, elevated: bool, reserve: usize, now: Instant) -> Result<(), Instant> {
        while self.sent.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
            self.sent.pop_front();
        }
        let limit = if elevated { ELEVATED_LIMIT } else { NORMAL_LIMIT }.saturating_sub(reserve).max(1);
        if self.sent.len() < limit {
            self.sent.push_back(now);
            return Ok(());
        }
        // Room returns when the oldest messages that keep the count at the limit leave the window.
        let oldest_blocking = self.sent[self.sent.len() - limit];
        Err(oldest_blocking + WINDOW)
    }
}

/// Splits `text` into messages of at most `max` characters, at a space where there is one, keeping
/// at most `parts` of them (the last then ends with `…`).
pub fn split(text: &str, max: usize, parts: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() && out.len() < parts {
        let chars = rest.chars().count();
        if chars <= max {
            out.push(rest.to_owned());
            return out;
        }
        let hard = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let cut = rest[..hard].rfind(' ').filter(|i| *i > 0).unwrap_or(hard);
        out.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty()
        && let Some(last) = out.last_mut()
    {
        // Make room for the ellipsis without breaking a character.
        while last.chars().count() > max.saturating_sub(2) {
            last.pop();
        }
        last.push_str(" …");
    }
    out
}

/// Hands replies to the sending task without waiting.
#[derive(Debug, Clone)]
pub struct Replies {
    tx: mpsc::Sender<Reply>,
    stats: Arc<TwitchCounters>,
}

impl Replies {
    /// Queues a reply; when the queue is full it is dropped and counted, never waited for.
    pub fn say(&self, channel: &str, text: String, priority: Priority) {
        let reply = Reply { channel: channel.to_owned(), text, priority, queued_at: Instant::now() };
        if self.tx.try_send(reply).is_err() {
            self.stats.replies_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Channels where the bot is a moderator or the broadcaster; the chat consumer writes it from USERSTATE.
pub type Elevated = Arc<Mutex<HashSet<String>>>;

/// Creates the reply queue and the future of the task that drains it through `client`.
pub fn spawn_sender<T: Transport, L: LoginCredentials>(
    client: TwitchIRCClient<T, L>,
    elevated: Elevated,
    stats: Arc<TwitchCounters>,
    shutdown: CancellationToken,
) -> (Replies, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = mpsc::channel(REPLY_QUEUE);
    let replies = Replies { tx, stats: stats.clone() };
    (replies, send_loop(client, rx, elevated, stats, shutdown))
}

async fn send_loop<T: Transport, L: LoginCredentials>(
    client: TwitchIRCClient<T, L>,
    mut rx: mpsc::Receiver<Reply>,
    elevated: Elevated,
    stats: Arc<TwitchCounters>,
    shutdown: CancellationToken,
) {
    let mut throttle = ReplyThrottle::default();
    let log = LogThrottle::per_minute();
    loop {
        let reply = tokio::select! {
            () = shutdown.cancelled() => return,
            r = rx.recv() => match r { Some(r) => r, None => return },
        };
        let is_elevated = elevated.lock().unwrap_or_else(PoisonError::into_inner).contains(&reply.channel);
        let reserve = if reply.priority == Priority::Viewer { ADMIN_RESERVE } else { 0 };
        for part in split(&reply.text, MAX_MESSAGE_CHARS, MAX_PARTS) {
            if !wait_for_slot(&mut throttle, &reply, is_elevated, reserve, &shutdown).await {
                stats.replies_dropped.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = log.allow("reply_dropped", Instant::now()) {
                    warn!(channel = %reply.channel, suppressed, "chat reply dropped: over Twitch's message limit");
                }
                break;
            }
            match tokio::time::timeout(SEND_TIMEOUT, client.privmsg(reply.channel.clone(), part)).await {
                Ok(Ok(())) => {
                    stats.replies_sent.fetch_add(1, Ordering::Relaxed);
                    debug!(channel = %reply.channel, "chat reply sent");
                }
                Ok(Err(e)) => failed(&stats, &log, &reply.channel, &e.to_string()),
                Err(_) => failed(&stats, &log, &reply.channel, "timed out"),
            }
        }
    }
}

/// Waits until the throttle gives a slot; false when the reply must be dropped instead.
async fn wait_for_slot(
    throttle: &mut ReplyThrottle,
    reply: &Reply,
    elevated: bool,
    reserve: usize,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        let now = Instant::now();
        match throttle.try_acquire(elevated, reserve, now) {
            Ok(()) => return true,
            Err(_) if reply.priority == Priority::Viewer => return false,
            Err(at) if at.saturating_duration_since(reply.queued_at) > MAX_REPLY_AGE => return false,
            Err(at) => {
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
        }
    }
}

fn failed(stats: &TwitchCounters, log: &LogThrottle, channel: &str, error: &str) {
    stats.replies_failed.fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = log.allow("reply_failed", Instant::now()) {
        warn!(channel, error, suppressed, "chat reply could not be sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_account_gets_20_messages_per_window() {
        let t0 = Instant::now();
        let mut t = ReplyThrottle::default();
        for i in 0..20u64 {
            assert_eq!(t.try_acquire(false, 0, t0 + Duration::from_millis(i * 100)), Ok(()), "message {i}");
        }
        // The 21st must wait until the first leaves the window.
        assert_eq!(t.try_acquire(false, 0, t0 + Duration::from_secs(5)), Err(t0 + WINDOW));
        assert_eq!(t.try_acquire(false, 0, t0 + Duration::from_millis(30_999)), Err(t0 + WINDOW));
        assert_eq!(t.try_acquire(false, 0, t0 + WINDOW), Ok(()));
        // Then the second one's slot.
        assert_eq!(t.try_acquire(false, 0, t0 + WINDOW), Err(t0 + Duration::from_millis(100) + WINDOW));
    }

    #[test]
    fn a_moderator_bot_gets_100_and_ordinary_channels_still_count_the_shared_total() {
        let t0 = Instant::now();
        let mut t = ReplyThrottle::default();
        for i in 0..100 {
            assert_eq!(t.try_acquire(true, 0, t0), Ok(()), "message {i}");
        }
        assert!(t.try_acquire(true, 0, t0).is_err());
        assert!(t.try_acquire(false, 0, t0).is_err(), "an ordinary channel is over its 20 already");
    }

    #[test]
    fn optional_replies_leave_room_for_admins() {
        let t0 = Instant::now();
        let mut t = ReplyThrottle::default();
        let optional = (0..30).filter(|_| t.try_acquire(false, ADMIN_RESERVE, t0).is_ok()).count();
        assert_eq!(optional, NORMAL_LIMIT - ADMIN_RESERVE);
        let admin = (0..30).filter(|_| t.try_acquire(false, 0, t0).is_ok()).count();
        assert_eq!(admin, ADMIN_RESERVE);
    }

    #[test]
    fn a_full_reply_queue_drops_and_counts_instead_of_growing() {
        let stats = Arc::new(TwitchCounters::default());
        let (tx, mut rx) = mpsc::channel(2);
        let replies = Replies { tx, stats: stats.clone() };
        for i in 0..5 {
            replies.say("show", format!("reply {i}"), Priority::Admin);
        }
        assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_recv().map(|r| r.text).ok(), Some("reply 0".to_owned()), "the oldest are kept, in order");
    }

    #[test]
    fn splitting_respects_the_limit_words_and_characters() {
        assert_eq!(split("routes: none", 500, 3), vec!["routes: none"]);
        let words = "word ".repeat(250);
        let parts = split(&words, 500, 3);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 500 && !p.ends_with(' ') && !p.starts_with(' ')));
        assert!(parts[0].ends_with("word"), "cut at a space");
        // No spaces and multi-byte characters: a hard cut on a character boundary.
        let emoji = "\u{1F525}".repeat(1200);
        let parts = split(&emoji, 500, 3);
        assert_eq!(parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(), vec![500, 500, 200]);
        // Too long for the parts allowed: the last one says so.
        let parts = split(&"x".repeat(2000), 500, 3);
        assert_eq!(parts.len(), 3);
        assert!(parts[2].ends_with(" …") && parts[2].chars().count() <= 500);
        assert!(split("   ", 500, 3).is_empty());
    }
}
