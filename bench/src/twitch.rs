//! The Twitch row, "twitch: IRC PRIVMSG → OSC": the Twitch chat source end to end.
//!
//! A minimal IRC server speaking as much of Twitch's dialect as twitch-irc needs (CAP/PASS/NICK, the
//! 001–376 welcome, the JOIN echo with USERSTATE and ROOMSTATE, PING/PONG) runs on a runtime of its
//! own thread, standing in for Twitch. An in-process bot joins its channel (`TWITCH_IRC_ADDR` pointed
//! at it, Redis off, OSC to the bench's UDP receiver). The server writes PRIVMSG lines in Twitch's
//! format and marks the moment each line goes onto the socket; the receiver matches every `/cv` and
//! `/routing add` datagram to its line.
//!
//! Two phases, after the broadcaster has routed the viewers' variables:
//!
//! * **paced**: viewers' parameter sets at [`RATE`]/s, with ordinary chat between them and a
//!   broadcaster's route command every [`ADMIN_EVERY`] lines: line → `/cv`, and line → `/routing add`;
//! * **bursts**: [`BURST`] viewers' parameter sets written at once, with a broadcaster's route command
//!   in the middle, behind more lines than the bot lets in before it sheds viewers' lines. The admin
//!   command must take effect (its `/routing add` arrives); its latency is reported on its own, with
//!   the viewer lines the bot shed at the socket.
//!
//! twitch-irc connects without arguments, so the bot's `TWITCH_IRC_ADDR` is process-wide: a process
//! runs this row once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cvbot::catalog::Catalog;
use rosc::{OscPacket, OscType};
use serde::Serialize;
use tokio::net::UdpSocket;

mod irc;

use super::measure::{Samples, Summary};
use super::pipeline::{self, BenchBot, BotOptions};
use irc::{Chatter, Server, Writer, privmsg};

/// Lines per second in the paced phase.
pub const RATE: u32 = 200;
/// One line in this many of the paced phase is the broadcaster's route command.
pub const ADMIN_EVERY: usize = 50;
/// Viewer lines in one burst; the admin command goes in the middle, behind more lines than the
/// bot's shedder lets into twitch-irc (`SHED_ABOVE`), so it gets through only because it is spared.
pub const BURST: usize = 8000;
/// Variables the viewers set, each routed to an output of its own.
const VIEWER_ROUTES: usize = 12;
/// Outputs the broadcaster's measured route commands move between [`ADMIN_VARIABLES`] variables.
const SPARE_OUTPUTS: usize = 4;
const ADMIN_VARIABLES: usize = 2;
/// Distinct viewers the lines come from.
const VIEWERS: usize = 500;
const CHANNEL: &str = "benchshow";
/// The channel's room id, which is also the broadcaster's user id.
const ROOM_ID: &str = "90000001";
/// How long the receiver waits for a datagram before it gives up on the rest.
const QUIET: Duration = Duration::from_secs(3);

/// The row's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TwitchRow {
    pub rate_per_s: u32,
    /// Viewers' parameter sets in the paced phase: line written on the socket → `/cv` received.
    pub latency: Summary,
    /// Parameter sets written in the paced phase (`latency.n` of them arrived).
    pub viewer_sent: usize,
    /// Ordinary chat lines written between them (no command).
    pub chatter_sent: usize,
    /// The broadcaster's route commands in the paced phase: line → `/routing add`.
    pub admin: Summary,
    pub admin_sent: usize,
    pub admin_arrived: usize,
    pub bursts: usize,
    /// Viewers' parameter sets in each burst.
    pub burst_lines: usize,
    /// The route command in the middle of each burst: line → `/routing add`.
    pub burst_admin: Summary,
    pub burst_admin_arrived: usize,
    /// Viewer lines the bot shed at the socket during the bursts (`chat_shed`: the process's
    /// shedder, which only this row's bot uses).
    pub burst_shed: u64,
}

/// Measures the row: starts the server and a bot, runs both phases, stops both.
pub async fn row(catalog: &Catalog, quick: bool) -> anyhow::Result<TwitchRow> {
    let server = Server::start()?;
    let rx = super::udp_receiver().await?;
    let vars = [
        ("TWITCH_IRC_ADDR", server.addr.to_string()),
        ("TWITCH_CHANNELS", format!("#{CHANNEL}")),
        ("TWITCH_USERNAME", "benchbot".to_owned()),
        ("TWITCH_OAUTH_TOKEN", "oauth:bench-not-a-real-token".to_owned()),
    ];
    let options = BotOptions { redis_url: None, vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() };
    let bot = BenchBot::start("bench-twitch", rx.local_addr()?, &options).await?;
    let result = measure(&server, catalog, quick, rx).await;
    bot.stop().await;
    server.side.stop().await;
    result
}

async fn measure(server: &Server, catalog: &Catalog, quick: bool, rx: UdpSocket) -> anyhow::Result<TwitchRow> {
    let scale = |quick_n: usize, full: usize| if quick { quick_n } else { full };
    let writer = server.joined(Duration::from_secs(15)).await?;
    let all = pipeline::routes(catalog, VIEWER_ROUTES + SPARE_OUTPUTS);
    anyhow::ensure!(all.len() == VIEWER_ROUTES + SPARE_OUTPUTS, "the catalogue has too few outputs for the row");
    let (viewer_routes, spare) = all.split_at(VIEWER_ROUTES);
    let mut plan = Plan {
        variables: viewer_routes.iter().map(|(_, v)| v.clone()).collect(),
        spare_outputs: spare.iter().map(|(o, _)| o.clone()).collect(),
        admin_variables: spare.iter().take(ADMIN_VARIABLES).map(|(_, v)| v.clone()).collect(),
        index: viewer_routes.iter().enumerate().map(|(i, (o, _))| (o.clone(), i)).collect(),
        sets: 0,
        admins: 0,
    };

    // The broadcaster routes the viewers' variables before the show.
    let boss = Chatter::broadcaster();
    let setup: Vec<Line> =
        viewer_routes.iter().map(|(o, v)| Line::plain(privmsg(&boss, &format!("!admin {o} → {v}")))).collect();
    server.paced(&writer, setup, 1000, Arc::default()).await?;
    let (routed, rx) = count_routes(rx, viewer_routes.len()).await;
    anyhow::ensure!(routed == viewer_routes.len(), "only {routed} of {} setup routes arrived", viewer_routes.len());
    pipeline::drain(&rx).await;

    // A short unmeasured warm-up, then the paced phase.
    let (_, rx) = plan.paced_phase(server, &writer, scale(100, 200), rx).await?;
    pipeline::drain(&rx).await;
    let n = scale(600, 6000);
    let (paced, rx) = plan.paced_phase(server, &writer, n, rx).await?;
    pipeline::drain(&rx).await;

    // Bursts with a route command in the middle.
    let bursts = scale(3, 10);
    // The shedder's own total: the bot's `chat_shed` counter catches up with it only once a second.
    let shed_before = cvbot::twitch::flood::shed_total();
    let mut burst_admin = Samples::default();
    let mut rx = rx;
    for burst in 0..bursts {
        let sent = Arc::new(Sent::default());
        let (first, admin, second) = plan.burst(burst);
        let collector = tokio::spawn(collect(rx, plan.index.clone(), 0, 1, sent.clone()));
        server.burst(&writer, first, admin, second, sent).await?;
        let (_, admin, back) = collector.await?;
        burst_admin.append(admin);
        pipeline::drain(&back).await;
        rx = back;
    }
    let burst_shed = cvbot::twitch::flood::shed_total().saturating_sub(shed_before);
    drop(rx);
    Ok(TwitchRow {
        rate_per_s: RATE,
        latency: paced.viewer.summary(),
        viewer_sent: paced.viewer_sent,
        chatter_sent: paced.chatter_sent,
        admin_arrived: paced.admin.len(),
        admin: paced.admin.summary(),
        admin_sent: paced.admin_sent,
        bursts,
        burst_lines: BURST,
        burst_admin_arrived: burst_admin.len(),
        burst_admin: burst_admin.summary(),
        burst_shed,
    })
}

/// What one paced phase measured.
struct Paced {
    viewer: Samples,
    admin: Samples,
    viewer_sent: usize,
    chatter_sent: usize,
    admin_sent: usize,
}

/// The lines the row writes; its counters keep every (route, value) and every admin (output,
/// variable) pair from coming back soon after it was used.
struct Plan {
    variables: Vec<String>,
    spare_outputs: Vec<String>,
    admin_variables: Vec<String>,
    /// Output → viewer route index.
    index: HashMap<String, usize>,
    sets: usize,
    admins: usize,
}

impl Plan {
    /// The next viewer parameter set: every route in turn, then the next value, so no (route,
    /// value) pair repeats within 128 rounds and no set repeats its route's value.
    fn next_set(&mut self, from: &Chatter) -> Line {
        let (route, value) = (self.sets % self.variables.len(), (self.sets / self.variables.len()) % 128);
        self.sets += 1;
        #[allow(clippy::cast_possible_truncation)] // Modulo 128 fits a u8.
        let value = value as u8;
        let text = format!("{}: {value}", self.variables[route]);
        Line { text: privmsg(from, &text), mark: Mark::Set(route, value) }
    }

    /// The broadcaster's next route command: each spare output in turn, to the other variable than
    /// last time, so every one changes a route and sends `/routing add`.
    fn next_admin(&mut self) -> Line {
        let output = self.spare_outputs[self.admins % self.spare_outputs.len()].clone();
        let variable =
            self.admin_variables[(self.admins / self.spare_outputs.len()) % self.admin_variables.len()].clone();
        self.admins += 1;
        Line {
            text: privmsg(&Chatter::broadcaster(), &format!("!admin {output} → {variable}")),
            mark: Mark::Route(output, variable),
        }
    }

    async fn paced_phase(
        &mut self,
        server: &Server,
        writer: &Writer,
        n: usize,
        rx: UdpSocket,
    ) -> anyhow::Result<(Paced, UdpSocket)> {
        let (mut viewer_sent, mut chatter_sent, mut admin_sent) = (0, 0, 0);
        let mut lines = Vec::with_capacity(n);
        for i in 0..n {
            let viewer = Chatter::viewer(i % VIEWERS);
            let line = if i % ADMIN_EVERY == ADMIN_EVERY / 2 {
                admin_sent += 1;
                self.next_admin()
            } else if i % 4 == 3 {
                chatter_sent += 1;
                Line::plain(privmsg(&viewer, "PogChamp what a patch, love the colours"))
            } else {
                viewer_sent += 1;
                self.next_set(&viewer)
            };
            lines.push(line);
        }
        let sent = Arc::new(Sent::default());
        let collector = tokio::spawn(collect(rx, self.index.clone(), viewer_sent, admin_sent, sent.clone()));
        server.paced(writer, lines, RATE, sent).await?;
        let (viewer, admin, rx) = collector.await?;
        Ok((Paced { viewer, admin, viewer_sent, chatter_sent, admin_sent }, rx))
    }

    /// Burst `b`: the viewer lines before the route command, the command, the lines after it.
    fn burst(&mut self, b: usize) -> (String, Line, String) {
        let mut half = |from: usize| {
            let mut text = String::with_capacity(BURST / 2 * 400);
            for i in from..from + BURST / 2 {
                text.push_str(&self.next_set(&Chatter::viewer((b * BURST + i) % VIEWERS)).text);
                text.push_str("\r\n");
            }
            text
        };
        let first = half(0);
        let second = half(BURST / 2);
        (first, self.next_admin(), second)
    }
}

/// What the receiver matches a datagram to.
#[derive(Debug, Clone)]
enum Mark {
    None,
    /// A viewer's set of route index, value: its `/cv`.
    Set(usize, u8),
    /// A route command (output, variable): its `/routing add`.
    Route(String, String),
}

/// One PRIVMSG line (without its CRLF) and what it should make the bot send.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    mark: Mark,
}

impl Line {
    fn plain(text: String) -> Line {
        Line { text, mark: Mark::None }
    }
}

/// When each measured line went onto the socket.
#[derive(Debug, Default)]
struct Sent {
    sets: Mutex<HashMap<(usize, u8), Instant>>,
    routes: Mutex<HashMap<(String, String), Instant>>,
}

impl Sent {
    fn mark(&self, mark: &Mark) {
        let now = Instant::now();
        match mark {
            Mark::None => {}
            Mark::Set(route, value) => {
                self.sets.lock().unwrap_or_else(PoisonError::into_inner).insert((*route, *value), now);
            }
            Mark::Route(output, variable) => {
                let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
                routes.insert((output.clone(), variable.clone()), now);
            }
        }
    }
}

/// A datagram the row looks at.
enum Datagram {
    Cv(String, u8),
    RouteAdd(String, String),
}

fn decode(datagram: &[u8]) -> Option<Datagram> {
    let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(datagram) else { return None };
    let text = |i: usize| match m.args.get(i) {
        Some(OscType::String(s)) => Some(s.clone()),
        _ => None,
    };
    match m.addr.as_str() {
        "/cv" => {
            let Some(OscType::Int(value)) = m.args.get(5) else { return None };
            Some(Datagram::Cv(text(0)?, u8::try_from(*value).ok()?))
        }
        "/routing" if text(0).as_deref() == Some("add") => Some(Datagram::RouteAdd(text(1)?, text(2)?)),
        _ => None,
    }
}

/// Receives until `sets` `/cv` and `routes` `/routing add` datagrams are matched to their lines, or
/// the socket is quiet for [`QUIET`].
async fn collect(
    rx: UdpSocket,
    index: HashMap<String, usize>,
    sets: usize,
    routes: usize,
    sent: Arc<Sent>,
) -> (Samples, Samples, UdpSocket) {
    let (mut set_samples, mut route_samples) = (Samples::with_capacity(sets), Samples::with_capacity(routes));
    let mut buf = vec![0u8; 2048];
    while set_samples.len() < sets || route_samples.len() < routes {
        let Ok(Ok(len)) = tokio::time::timeout(QUIET, rx.recv(&mut buf)).await else { break };
        let got = Instant::now();
        match decode(&buf[..len]) {
            Some(Datagram::Cv(output, value)) => {
                let Some(&route) = index.get(&output) else { continue };
                let at = sent.sets.lock().unwrap_or_else(PoisonError::into_inner).remove(&(route, value));
                if let Some(at) = at {
                    set_samples.push(got.duration_since(at));
                }
            }
            Some(Datagram::RouteAdd(output, variable)) => {
                let at = sent.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&(output, variable));
                if let Some(at) = at {
                    route_samples.push(got.duration_since(at));
                }
            }
            None => {}
        }
    }
    (set_samples, route_samples, rx)
}

/// Counts `/routing add` datagrams until `n` arrived or the socket is quiet.
async fn count_routes(rx: UdpSocket, n: usize) -> (usize, UdpSocket) {
    let mut buf = vec![0u8; 2048];
    let mut seen = 0;
    while seen < n {
        let Ok(Ok(len)) = tokio::time::timeout(QUIET, rx.recv(&mut buf)).await else { break };
        if let Some(Datagram::RouteAdd(..)) = decode(&buf[..len]) {
            seen += 1;
        }
    }
    (seen, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_the_tags_the_bot_reads_roles_from() {
        let boss = privmsg(&Chatter::broadcaster(), "!admin clear");
        assert!(boss.starts_with("@badge-info=;badges=broadcaster/1;"), "{boss}");
        assert!(boss.contains(&format!(";room-id={ROOM_ID};")) && boss.contains(&format!(";user-id={ROOM_ID};")));
        assert!(
            boss.ends_with(&format!(" :{CHANNEL}!{CHANNEL}@{CHANNEL}.tmi.twitch.tv PRIVMSG #{CHANNEL} :!admin clear"))
        );
        let viewer = privmsg(&Chatter::viewer(7), "hi");
        assert!(viewer.contains(";badges=;") && viewer.contains(";user-id=100007;"), "{viewer}");
        assert_ne!(privmsg(&Chatter::viewer(7), "hi"), viewer, "every line has a message id of its own");
    }

    #[test]
    fn the_plan_never_repeats_a_set_soon_and_every_route_command_changes_a_route() {
        let mut plan = Plan {
            variables: vec!["a#1.x".into(), "b#1.y".into()],
            spare_outputs: vec!["o1".into(), "o2".into()],
            admin_variables: vec!["v1".into(), "v2".into()],
            index: HashMap::new(),
            sets: 0,
            admins: 0,
        };
        let marks: Vec<_> = (0..4)
            .map(|_| match plan.next_set(&Chatter::viewer(0)).mark {
                Mark::Set(r, v) => (r, v),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(marks, [(0, 0), (1, 0), (0, 1), (1, 1)]);
        let routes: Vec<_> = (0..4)
            .map(|_| match plan.next_admin().mark {
                Mark::Route(o, v) => format!("{o}→{v}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(routes, ["o1→v1", "o2→v1", "o1→v2", "o2→v2"]);
    }
}
