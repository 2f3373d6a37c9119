//! The Twitch chat source: a twitch-irc client joined to `TWITCH_CHANNELS`, feeding chat into the shared
//! [`Intake`] and saying admins' replies back, within Twitch's limits.
//!
//! Two tasks, so reading chat never waits on anything slow:
//!
//! * the **consumer** reads twitch-irc's (unbounded) incoming queue; per message it de-duplicates,
//!   works out roles and parses ([`Intake::classify`], pure and cheap), drops ordinary chat there and
//!   then, and runs each command at once ([`Intake::run`]: a few microseconds under the coordinator's
//!   lock, which it never awaits), handing any reply on without waiting. Commands run in chat order;
//! * the **reply sender** ([`replies`]) keeps the bot inside Twitch's message limits.
//!
//! **Admin commands first.** In front of the consumer, at the socket, [`flood`] sheds ordinary
//! viewers' lines once more than [`flood::SHED_ABOVE`] chat messages are in flight inside twitch-irc
//! (whose queues are unbounded), and never sheds a line from the broadcaster, a moderator or
//! `ADMIN_USERS`. So an admin command is never dropped, and never waits behind more than about
//! `SHED_ABOVE` viewer lines, each run in microseconds, however hard chat floods: that bound, not a
//! queue of its own, is what puts it first.
//!
//! Knows Twitch IRC and the intake; nothing of State, OSC, Redis or HTTP.

pub mod flood;
mod relay;
pub mod replies;
pub mod roles;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use twitch_irc::login::StaticLoginCredentials;
use twitch_irc::message::{PrivmsgMessage, ServerMessage};
use twitch_irc::transport::Transport;
use twitch_irc::transport::tcp::{TCPTransport, TLS};
use twitch_irc::{ClientConfig, TwitchIRCClient};

use crate::chat::Intake;
use crate::chat::help::Repeats;
use crate::command::{Command, ParseError};
use crate::config::{Config, Secret};
use crate::coord::{Answer, Done, Outcome, Refusal};
use crate::stats::{CounterSet, LogThrottle, Stats};
use replies::{Elevated, Priority, Replies};

/// A tracing directive that keeps twitch-irc's raw-line tracing off whatever the log level, because the
/// raw lines it traces include `PASS oauth:…`: the token must never reach a log.
pub const LOG_DIRECTIVE: &str = "twitch_irc::connection::event_loop=debug";
/// How often the joined state of the channels is checked for the status.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often the consumer reports shed lines, and how long it must go without a chat message before
/// it tells the shedder that nothing is in flight any more.
const SHED_TICK: Duration = Duration::from_secs(1);

/// Twitch's own TLS connections, behind the flood shedder.
type TwitchTransport = TCPTransport<flood::Guarded<TLS>>;

/// The Twitch connection as logs and health report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwitchStatus {
    /// No `TWITCH_CHANNELS`: no Twitch chat.
    Disabled,
    Connecting,
    /// Joined to every configured channel.
    Joined,
    /// Lost a connection or a channel (or Twitch asked to reconnect); rejoining by itself.
    Reconnecting,
    /// Twitch refused the token; retrying, but a person must fix `TWITCH_OAUTH_TOKEN`.
    LoginFailed,
}

impl TwitchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Connecting => "connecting",
            Self::Joined => "joined",
            Self::Reconnecting => "reconnecting",
            Self::LoginFailed => "login_failed",
        }
    }
}

/// What the Twitch source needs from the configuration.
#[derive(Debug, Clone)]
pub struct TwitchSettings {
    pub channels: Vec<String>,
    /// Login and token; `None` reads chat anonymously and never speaks.
    pub account: Option<(String, Secret)>,
    /// `TWITCH_IRC_ADDR`: a plain-TCP server instead of Twitch.
    pub server: Option<SocketAddr>,
    pub reply_errors: bool,
    /// `ADMIN_USERS`: their chat lines are never shed in a flood.
    pub admin_users: Vec<String>,
}

impl TwitchSettings {
    /// `None` when no channel is configured.
    pub fn from_config(config: &Config) -> Option<TwitchSettings> {
        if config.twitch_channels.is_empty() {
            return None;
        }
        let account = match (&config.twitch_username, config.twitch_oauth_token.is_set()) {
            (Some(login), true) => Some((login.clone(), config.twitch_oauth_token.clone())),
            _ => None,
        };
        Some(TwitchSettings {
            channels: config.twitch_channels.clone(),
            account,
            server: config.twitch_irc_addr,
            reply_errors: config.chat_reply_errors,
            admin_users: config.admin_users.iter().cloned().collect(),
        })
    }
}

/// The Twitch source's counters, registered with [`Stats`].
#[derive(Debug, Default)]
pub struct TwitchCounters {
    /// Twitch messages seen twice (same message id, e.g. across a reconnect) and ignored the second time.
    pub chat_duplicates: AtomicU64,
    /// Chat lines shed at the socket during a flood (ordinary viewers' PRIVMSGs while too many were
    /// in flight), or server lines too long to be Twitch's.
    pub chat_shed: AtomicU64,
    /// Chat replies sent (one per 500-character part).
    pub replies_sent: AtomicU64,
    /// Chat replies dropped: reply queue full, over Twitch's rate limit for too long, or a viewer
    /// error reply with no room left.
    pub replies_dropped: AtomicU64,
    /// Chat replies the IRC connection failed to send.
    pub replies_failed: AtomicU64,
    /// Questions (`!cv help`, `!cv list`, …) a viewer asked again within 30 s, not answered again.
    pub questions_repeated: AtomicU64,
}

impl CounterSet for TwitchCounters {
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        for (name, c) in [
            ("chat_duplicates", &self.chat_duplicates),
            ("chat_shed", &self.chat_shed),
            ("replies_sent", &self.replies_sent),
            ("replies_dropped", &self.replies_dropped),
            ("replies_failed", &self.replies_failed),
            ("questions_repeated", &self.questions_repeated),
        ] {
            out(name, c.load(Ordering::Relaxed));
        }
    }
}

/// Runs the Twitch source until `shutdown`. Returns an error only if the client cannot start or stops
/// by itself (it reconnects on its own, so that is a bug worth a restart).
pub async fn run(
    settings: TwitchSettings,
    intake: Intake,
    stats: Arc<Stats>,
    status: watch::Sender<TwitchStatus>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let counters = Arc::new(TwitchCounters::default());
    stats.register(counters.clone());
    let credentials = match &settings.account {
        Some((login, token)) => StaticLoginCredentials::new(login.clone(), Some(token.expose().to_owned())),
        None => StaticLoginCredentials::anonymous(),
    };
    flood::spare(settings.admin_users.iter().cloned());
    let mut config = ClientConfig::new_simple(credentials);
    config.tracing_identifier = Some("twitch".into());
    // twitch-irc opens another connection when one has sent 5 messages in the last ~750 ms. Twitch
    // limits messages per account, not per connection, and our own throttle keeps to that limit, so
    // replies share the joined connection instead of opening (and logging in) new ones.
    config.max_waiting_messages_per_connection = replies::ELEVATED_LIMIT;
    match settings.server {
        Some(addr) => {
            relay::use_addr(addr)?;
            // A test server or relay has no connection-rate limit to respect; reconnect promptly.
            config.new_connection_every = Duration::from_millis(50);
            config.connect_timeout = Duration::from_secs(5);
            info!(server = %addr, "Twitch chat through a plain-TCP IRC server (TWITCH_IRC_ADDR)");
            run_client::<relay::RelayTransport>(config, settings, intake, counters, status, shutdown).await
        }
        None => run_client::<TwitchTransport>(config, settings, intake, counters, status, shutdown).await,
    }
}

async fn run_client<T: Transport>(
    config: ClientConfig<StaticLoginCredentials>,
    settings: TwitchSettings,
    intake: Intake,
    counters: Arc<TwitchCounters>,
    status: watch::Sender<TwitchStatus>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let login = config.login_credentials.credentials.login.clone();
    let (incoming, client) = TwitchIRCClient::<T, StaticLoginCredentials>::new(config);
    let channels: HashSet<String> = settings.channels.iter().cloned().collect();
    client.set_wanted_channels(channels.clone()).context("TWITCH_CHANNELS")?;
    status.send_replace(TwitchStatus::Connecting);
    let elevated = Elevated::default();
    // Aborted when this function returns, so no helper outlives the source.
    let mut tasks = JoinSet::new();
    let replies = if settings.account.is_some() {
        info!(login = %login, channels = ?settings.channels, "joining Twitch chat");
        let (replies, sender) =
            replies::spawn_sender(client.clone(), elevated.clone(), counters.clone(), shutdown.clone());
        tasks.spawn(sender);
        Some(replies)
    } else {
        info!(channels = ?settings.channels, "joining Twitch chat anonymously: read-only, no replies in chat");
        None
    };
    tasks.spawn(watch_joins(client.clone(), channels, status.clone(), shutdown.clone()));
    let consumer = Consumer {
        intake,
        counters,
        recent: roles::RecentIds::default(),
        replies,
        reply_errors: settings.reply_errors,
        repeats: Repeats::default(),
        elevated,
        status,
        login,
        log: LogThrottle::per_minute(),
    };
    let result = consumer.run(incoming, &mut tasks, shutdown).await;
    drop(client);
    tasks.shutdown().await;
    result
}

/// Reads everything twitch-irc receives and runs the commands in it. Never awaits anything slow: see
/// the module docs.
struct Consumer {
    intake: Intake,
    counters: Arc<TwitchCounters>,
    recent: roles::RecentIds,
    replies: Option<Replies>,
    reply_errors: bool,
    /// Who asked which question when, so a repeat within 30 s is not answered twice.
    repeats: Repeats,
    elevated: Elevated,
    status: watch::Sender<TwitchStatus>,
    login: String,
    log: LogThrottle,
}

impl Consumer {
    /// Runs until shutdown; fails if the client or one of the `helpers` (reply sender, status)
    /// stops by itself, because chat would then go unanswered or unapplied without anyone noticing.
    async fn run(
        mut self,
        mut incoming: mpsc::UnboundedReceiver<ServerMessage>,
        helpers: &mut JoinSet<()>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(SHED_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut chat_since_tick = false;
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some(ended) = helpers.join_next() => {
                    let how = ended.err().map_or_else(|| "returned".to_owned(), |e| e.to_string());
                    anyhow::bail!("a Twitch helper task stopped by itself ({how})");
                }
                // Before the messages, so a flood cannot starve it.
                _ = tick.tick() => {
                    self.on_tick(std::mem::take(&mut chat_since_tick));
                    continue;
                }
                m = incoming.recv() => m.context("the Twitch client stopped by itself")?,
            };
            match message {
                ServerMessage::Privmsg(msg) => {
                    flood::note_handled(&msg);
                    chat_since_tick = true;
                    self.on_privmsg(&msg);
                }
                ServerMessage::UserState(state) => {
                    let is_elevated = roles::bot_is_elevated(&state);
                    let mut set = self.elevated.lock().unwrap_or_else(PoisonError::into_inner);
                    if is_elevated && set.insert(state.channel_login.clone()) {
                        info!(channel = %state.channel_login, "the bot is a moderator here: up to 100 replies per 30 s");
                    } else if !is_elevated {
                        set.remove(&state.channel_login);
                    }
                }
                ServerMessage::Join(join) if join.user_login == self.login => {
                    info!(channel = %join.channel_login, "joined Twitch channel");
                }
                ServerMessage::Reconnect(_) => {
                    info!("Twitch asked the bot to reconnect; rejoining");
                    self.status.send_replace(TwitchStatus::Reconnecting);
                }
                ServerMessage::Notice(notice) => self.on_notice(notice.channel_login.as_deref(), &notice.message_text),
                _ => {}
            }
        }
    }

    /// Reports what the shedder dropped; after a second without chat, tells it nothing is in flight.
    fn on_tick(&self, chat_since_tick: bool) {
        let total = flood::shed_total();
        let shed = total.saturating_sub(self.counters.chat_shed.swap(total, Ordering::Relaxed));
        if shed > 0
            && let Some(suppressed) = self.log.allow("chat_shed", Instant::now())
        {
            warn!(shed, suppressed, "chat flood: ordinary viewers' lines shed at the socket");
        }
        if !chat_since_tick {
            flood::catch_up();
        }
    }

    /// De-duplicates, works out roles, parses, and runs a command at once; ordinary chat is dropped.
    fn on_privmsg(&mut self, msg: &PrivmsgMessage) {
        if !self.recent.first_time(&msg.message_id) {
            self.counters.chat_duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let at = Instant::now();
        let sender = roles::sender_of(msg);
        // A `/me` (ACTION) message is read like any other: its text is what the viewer typed after `/me`.
        match self.intake.classify(&sender.login, &msg.message_text) {
            Ok(Command::Ask(question)) if !self.repeats.first_time(&sender.login, &question, at) => {
                self.counters.questions_repeated.fetch_add(1, Ordering::Relaxed);
            }
            Ok(command) => {
                let admin = command.is_admin();
                let outcome = self.intake.run(&sender, command, at);
                self.on_outcome(&msg.channel_login, &sender.login, admin, outcome);
            }
            Err(reason) if reason.reason() == ParseError::NotACommand => {}
            Err(reason) => {
                let mod_typo = (sender.moderator || sender.broadcaster) && msg.message_text.starts_with("!admin");
                if let Some(replies) = &self.replies
                    && (self.reply_errors || mod_typo)
                {
                    let priority = if mod_typo { Priority::Admin } else { Priority::Viewer };
                    replies.say(&msg.channel_login, format!("@{} {reason}", sender.login), priority);
                }
            }
        }
    }

    /// Hands on the reply a command's outcome calls for, if any (never waits: see [`Replies::say`]).
    fn on_outcome(&self, channel: &str, name: &str, admin: bool, outcome: Outcome) {
        let Some(replies) = &self.replies else { return };
        match outcome {
            // Asked for, so said whatever `CHAT_REPLY_ERRORS` is; a viewer's lesson leaves room for admins.
            Outcome::Done(Done::Answer(answer @ Answer::Lesson(_))) => {
                let priority = if admin { Priority::Admin } else { Priority::Viewer };
                replies.say(channel, format!("@{name} {}", crate::chat::reply::answer(&answer)), priority);
            }
            Outcome::Done(done) => {
                if let Some(text) = crate::chat::reply::done(&done) {
                    replies.say(channel, text, Priority::Admin);
                }
            }
            Outcome::Refused(Refusal::ShuttingDown) => {}
            // An admin whose command changed nothing (already so, beyond a limit) is told why, so a
            // moderator never believes an action happened that did not.
            Outcome::Refused(reason @ (Refusal::Unchanged(_) | Refusal::OutOfLimit { .. } | Refusal::Superseded))
                if admin =>
            {
                replies.say(channel, format!("@{name} ✗ {reason}"), Priority::Admin);
            }
            Outcome::Refused(reason) if self.reply_errors => {
                replies.say(channel, format!("@{name} {reason}"), Priority::Viewer);
            }
            Outcome::Refused(_) => {}
        }
    }

    fn on_notice(&self, channel: Option<&str>, text: &str) {
        let lower = text.to_ascii_lowercase();
        if lower.contains("login authentication failed") || lower.contains("improperly formatted auth") {
            self.status.send_replace(TwitchStatus::LoginFailed);
            if self.log.allow("login_failed", Instant::now()).is_some() {
                error!(notice = %text, "Twitch refused the login: check TWITCH_USERNAME and TWITCH_OAUTH_TOKEN");
            }
        } else if let Some(suppressed) = self.log.allow("notice", Instant::now()) {
            info!(channel = channel.unwrap_or(""), notice = %text, suppressed, "notice from Twitch");
        }
    }
}

/// Keeps the status true to the client's joined channels, and logs when it changes.
async fn watch_joins<T: Transport>(
    client: TwitchIRCClient<T, StaticLoginCredentials>,
    channels: HashSet<String>,
    status: watch::Sender<TwitchStatus>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut joined = 0;
        for channel in &channels {
            if client.get_channel_status(channel.clone()).await.1 {
                joined += 1;
            }
        }
        let now = *status.borrow();
        let next = match now {
            _ if joined == channels.len() => TwitchStatus::Joined,
            TwitchStatus::Joined => TwitchStatus::Reconnecting,
            other => other,
        };
        if next != now {
            status.send_replace(next);
            match next {
                TwitchStatus::Joined => info!(channels = joined, "Twitch chat connected"),
                _ => warn!(joined, wanted = channels.len(), "Twitch chat connection lost; reconnecting"),
            }
        }
    }
}
