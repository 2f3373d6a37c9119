//! Wiring: builds every stage from a validated [`Config`] and the sockets the caller bound, runs them
//! as supervised tasks, and shuts them down together.
//!
//! Every task stops on the shared [`CancellationToken`]; a critical task that fails or ends early
//! cancels the rest and [`Running::wait`] returns its cause. No stage logic lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::catalog::Catalog;
use crate::chat::{Intake, run_demo, run_terminal};
use crate::config::Config;
use crate::coord::{CoordHandle, Coordinator};
use crate::gate::{Gate, GatePolicy};
use crate::http::{HttpContext, Hub};
use crate::instances::{Alone, Presence};
use crate::osc::{Encoder, OscStage, StageOptions};
use crate::redis_link::history::RedisHistory;
use crate::redis_link::presence::ClusterPresence;
use crate::redis_link::{LinkCounters, RedisLink};
use crate::routes_file;
use crate::scenes_file;
use crate::state::State;
use crate::stats::{LinkStatus, Stats};
use crate::twitch::{TwitchSettings, TwitchStatus};

mod democracy;
pub use democracy::DECIDE_EVERY;
mod link;
mod motion;
mod supervisor;

use link::link_settings;
use supervisor::Supervisor;

/// How long shutdown may take before the remaining tasks are abandoned.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// A problem with the files the configuration points at (catalogue, routing file, scenes file): the
/// user must fix them, so `main` exits with the configuration status code.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Routes(#[from] routes_file::RoutesFileError),
    #[error(transparent)]
    Scenes(#[from] scenes_file::ScenesFileError),
    #[error(transparent)]
    RedisTls(#[from] crate::redis_link::tls::TlsFileError),
}

/// Terminal chat input: any byte stream (stdin through [`crate::chat::stdin_reader`] in `main`, an
/// in-memory pipe in tests), split into lines by the terminal source.
pub type ChatInput = Box<dyn AsyncRead + Send + Unpin>;

/// The edges of the process, bound or opened by the caller.
#[derive(Debug)]
pub struct Listeners {
    pub http: std::net::TcpListener,
    /// The socket OSC datagrams leave from.
    pub osc: std::net::UdpSocket,
}

impl Listeners {
    /// Binds `HTTP_ADDR` and an ephemeral UDP socket of the OSC targets' address family.
    pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let http = std::net::TcpListener::bind(config.http_addr)
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
        http.set_nonblocking(true)?;
        let any: SocketAddr =
            if config.osc_targets.iter().all(SocketAddr::is_ipv6) { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
        let osc = std::net::UdpSocket::bind(any).context("cannot open a UDP socket for OSC")?;
        osc.set_nonblocking(true)?;
        Ok(Listeners { http, osc })
    }
}

/// Options that do not come from the environment.
#[derive(Default)]
pub struct Extras {
    /// Chat lines from the terminal operator.
    pub chat_input: Option<ChatInput>,
    /// Simulated viewers (`--demo`).
    pub demo: bool,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras").field("chat_input", &self.chat_input.is_some()).field("demo", &self.demo).finish()
    }
}

/// A started bot: where it listens, its intake, and the handle to wait for it.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    pub intake: Intake,
    pub stats: Arc<Stats>,
    /// The Twitch chat connection (`Disabled` without `TWITCH_CHANNELS`), for health and tests.
    pub twitch_status: watch::Receiver<TwitchStatus>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    failure: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Running {
    /// Waits until shutdown is requested or a critical task fails, then stops everything within the
    /// grace period. Returns the first failure, if any.
    pub async fn wait(self) -> anyhow::Result<()> {
        Supervisor { tracker: self.tracker, shutdown: self.shutdown, failure: self.failure }.wait().await
    }

    /// Asks every task to stop (what SIGINT does).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// Builds and starts every stage. Returns once the bot is serving.
pub async fn start(
    config: Config,
    listeners: Listeners,
    extras: Extras,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    // TLS files are read now, so a missing one stops start-up instead of failing every reconnect.
    let redis_tls = Arc::new(crate::redis_link::tls::TlsMaterial::read(&config.redis_tls).map_err(StartupError::from)?);
    let (catalog, state) = load_show_files(&config)?;
    let stats = Arc::new(Stats::default());
    let instance: Arc<str> = config.instance_id.as_str().into();
    let sup = Supervisor { tracker: TaskTracker::new(), shutdown: shutdown.clone(), failure: Arc::default() };
    let encoder = Encoder::new(config.osc_format, catalog.clone());
    let options = StageOptions {
        rest_on_shutdown: config.output_rest_on_shutdown,
        bundle: config.motion.osc_bundle,
        instance: instance.clone(),
    };
    let osc = OscStage::new(listeners.osc, config.osc_targets.clone(), encoder, &stats, options)?;
    let Core { coord, redis_status, presence, redis_history, link_counters } =
        spawn_core(&config, redis_tls, &sup, &catalog, state, osc, &stats);

    if extras.demo {
        // The demo's simulated routes must never reach the show: a saved demo route would be replayed
        // to Max at the next real start. So with `--demo` routes and scenes live in memory only; the
        // files are read (the demo may show the real patch) but never written.
        info!(
            routes = %config.routing_file.display(),
            scenes = %config.scenes_file().display(),
            "demo: routes and scenes live in memory only; their files are not written"
        );
    } else {
        sup.critical(
            "routing-file",
            routes_file::keep_saved(config.routing_file.clone(), catalog.clone(), &coord, &stats, shutdown.clone()),
        );
        sup.critical("scenes-file", scenes_file::keep_saved(config.scenes_file(), &coord, &stats, shutdown.clone()));
    }

    let intake = Intake::new(catalog.clone(), coord.clone(), &stats);
    let http_listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let http_addr = http_listener.local_addr()?;
    let Some(hub) = Hub::new(instance.clone(), catalog.value_max(), coord.clone()).attach() else {
        // A critical task that failed at once (a twin refused by Redis) closed the coordinator: its
        // error, not this symptom, is why start-up stopped.
        let failure = sup.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        return Err(failure.unwrap_or_else(|| anyhow::anyhow!("the coordinator stopped during start-up")));
    };
    let (twitch_tx, twitch_status) = watch::channel(TwitchStatus::Disabled);
    let ctx = HttpContext {
        instance_id: instance.clone(),
        value_max: catalog.value_max(),
        coord: coord.clone(),
        stats: stats.clone(),
        link: link_counters,
        redis_status,
        overlay_dir: PathBuf::from("overlay"),
        catalog: catalog.clone(),
        intake: intake.clone(),
        hub,
        admin_token: config.admin_token.clone(),
        shutdown: shutdown.clone(),
        sse_keepalive: config.sse_keepalive,
        presence,
        redis_history,
        twitch_status: twitch_status.clone(),
        limits: crate::http::HttpLimits::new(
            config.http_header_timeout,
            config.http_max_connections,
            config.sse_max_clients,
            config.http_allowed_hosts.clone(),
        ),
    };
    sup.critical("http", crate::http::serve(http_listener, ctx, shutdown.clone()));

    if let Some(input) = extras.chat_input {
        sup.optional(
            "terminal chat",
            run_terminal(input, intake.clone(), config.operator_name.clone(), shutdown.clone()),
        );
    }
    if extras.demo {
        sup.optional("demo viewers", run_demo(intake.clone(), fastrand::u64(..), shutdown.clone()));
    }
    if let Some(settings) = TwitchSettings::from_config(&config) {
        // Critical: the client reconnects by itself and never ends; if it does, a show deaf to chat is
        // worse than a restart, so the process exits non-zero for its supervisor.
        let twitch = crate::twitch::run(settings, intake.clone(), stats.clone(), twitch_tx, shutdown.clone());
        sup.critical("twitch chat", twitch);
    }
    announce(&instance, http_addr, &config);
    Ok(Running { http_addr, intake, stats, twitch_status, tracker: sup.tracker, shutdown, failure: sup.failure })
}

/// The catalogue, and a State seeded with the routes of the routing file and the scenes of the
/// scenes file (both with the zero stamp, so anything Redis holds wins over them).
fn load_show_files(config: &Config) -> anyhow::Result<(Arc<Catalog>, State)> {
    let catalog = Arc::new(Catalog::load(config.catalog_path.as_deref()).map_err(StartupError::from)?);
    let routes = routes_file::load(&config.routing_file, &catalog).map_err(StartupError::from)?;
    let scenes = scenes_file::load(&config.scenes_file(), &catalog).map_err(StartupError::from)?;
    info!(
        catalogue = %catalog.source(),
        modules = catalog.module_count(),
        outputs = catalog.output_count(),
        routes = routes.len(),
        scenes = scenes.len(),
        "catalogue, routes and scenes loaded"
    );
    let mut state = State::default();
    for (output, route) in routes {
        state.seed_route(output, route);
    }
    for (name, scene) in scenes {
        state.seed_scene(name, scene);
    }
    Ok((catalog, state))
}

/// What the core hands to the outer stages.
struct Core {
    /// The `{cv}:history` reader, through the link's sessions (none without Redis).
    redis_history: Option<RedisHistory>,
    coord: CoordHandle,
    redis_status: watch::Receiver<LinkStatus>,
    presence: Arc<dyn Presence>,
    /// The link's counters and gauges, for health (registered with `Stats` even without Redis).
    link_counters: Arc<LinkCounters>,
}

/// Starts the coordinator and, when enabled, the Redis link that drains its outbox.
fn spawn_core(
    config: &Config,
    redis_tls: Arc<crate::redis_link::tls::TlsMaterial>,
    sup: &Supervisor,
    catalog: &Arc<Catalog>,
    state: State,
    osc: OscStage,
    stats: &Arc<Stats>,
) -> Core {
    let instance: Arc<str> = config.instance_id.as_str().into();
    let shutdown = sup.shutdown.clone();
    let policy = GatePolicy {
        user_cooldown: config.rate_limit,
        global_per_second: config.global_rate_limit,
        admin_users: config.admin_users.clone(),
    };
    let (redis_status_tx, redis_status) = watch::channel(LinkStatus::Disabled);
    let link_counters = Arc::new(LinkCounters::default());
    stats.register(link_counters.clone());
    let cluster = config.redis_enabled.then(|| {
        let (outbox_tx, outbox_rx) = mpsc::channel(config.outbox_capacity);
        (outbox_tx, outbox_rx, ClusterPresence::new(&instance))
    });
    let presence: Arc<dyn Presence> = match &cluster {
        Some((_, _, p)) => p.clone(),
        None => Arc::new(Alone(instance.clone())),
    };
    let coordinator = Coordinator::new(
        instance.clone(),
        catalog.clone(),
        state,
        Gate::new(&policy, Instant::now()),
        cluster.as_ref().map(|(tx, _, _)| tx.clone()),
        presence.clone(),
        stats,
    )
    .with_osc(osc)
    .with_ramp_max_ms(config.motion.ramp_max_ms);
    let wake = coordinator.motion_waker();
    let (coord, coord_task) = coordinator.spawn(shutdown.clone());
    sup.critical("coordinator", async move {
        coord_task.await;
        Ok(())
    });
    sup.critical("democracy", democracy::run_democracy(coord.clone(), shutdown.clone()));
    if let Some(wake) = wake {
        sup.critical("osc motion", motion::run_motion(coord.clone(), wake, config.motion, shutdown.clone()));
    }
    let mut redis_history = None;
    if let Some((_, outbox_rx, presence)) = cluster {
        redis_status_tx.send_replace(LinkStatus::Connecting);
        let link = RedisLink::new(
            link_settings(config, redis_tls),
            &instance,
            catalog.clone(),
            coord.clone(),
            outbox_rx,
            redis_status_tx,
            stats.clone(),
            link_counters.clone(),
            presence,
        );
        redis_history = Some(link.history());
        sup.critical("redis", link.run(shutdown));
    }
    Core { redis_history, coord, redis_status, presence, link_counters }
}

/// The async runtime the bot runs on: multi-threaded, one worker per core (the binary and the bench
/// use the same one, so the bench measures what users run).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    runtime_named("cvbot-worker")
}

/// The runtime with its worker threads named `name`, so a profile tells instances apart.
pub fn runtime_named(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().thread_name(name).enable_all().build()
}

/// Starts the bot and runs it until `shutdown` is cancelled or a critical task fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    extras: Extras,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    start(config, listeners, extras, shutdown).await?.wait().await
}

/// Tells the operator where everything is.
fn announce(instance: &str, http_addr: SocketAddr, config: &Config) {
    let shown = display_addr(http_addr);
    info!(instance = %instance, "cvbot is live: every page and endpoint is linked from http://{shown}/");
    info!("overlay (OBS browser source): http://{shown}/overlay");
    info!("state: http://{shown}/api/state   health: http://{shown}/healthz");
    if config.admin_token.is_set() {
        info!("admin page: http://{shown}/admin (log in with ADMIN_TOKEN)");
    } else {
        info!("admin page: http://{shown}/admin (write endpoints disabled until ADMIN_TOKEN is set)");
    }
    info!(targets = ?config.osc_targets, "OSC output");
}

/// An address a browser on this machine can open (`0.0.0.0` is not one).
fn display_addr(addr: SocketAddr) -> SocketAddr {
    let mut shown = addr;
    if addr.ip().is_unspecified() {
        shown.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    shown
}
