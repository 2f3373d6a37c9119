//! The `cvbot` binary: loads `.env`, sets up logging, validates the configuration, binds sockets and
//! hands everything to [`cvbot::run`], and makes sure the process ends once shutdown has begun. Knows
//! no stage: only the app's entry points, the configuration and the exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cvbot::app::{Extras, StartupError};
use cvbot::config::{Config, StdinMode};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Twitch chat plays a modular synthesizer: chat commands become control voltages over OSC.
///
/// Configuration comes from the environment and an optional `.env` file; see `.env.example`.
#[derive(Debug, Parser)]
#[command(name = "cvbot", version)]
struct Cli {
    /// Add simulated viewers sending commands a few times a second.
    #[arg(long)]
    demo: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the bot (the default).
    Run {
        /// Add simulated viewers sending commands a few times a second.
        #[arg(long)]
        demo: bool,
    },
    /// Print the effective configuration (secrets masked) and exit.
    Config,
}

/// Exit status for configuration problems (bad variable, catalogue or routing file).
const EXIT_CONFIG: u8 = 2;
/// Exit status when shutdown had to be cut short (see [`EXIT_DEADLINE`]).
const EXIT_FAILURE: i32 = 1;
/// How long the runtime may take to drop what is left once `run` has returned: tasks still running
/// are dropped at once; blocking-pool threads (a DNS lookup, say) are abandoned after this.
const RUNTIME_LINGER: Duration = Duration::from_millis(200);
/// Once shutdown has begun (signal or fatal error), the process ends within this time even if a task
/// or the runtime itself is stuck: `Running::wait` gives the tasks `SHUTDOWN_GRACE` (1.5 s), the
/// runtime gets [`RUNTIME_LINGER`], and this catches anything that still holds on, inside the 2 s a
/// show may wait for a restart.
const EXIT_DEADLINE: Duration = Duration::from_millis(1900);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("cvbot: .env: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let vars = std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()));
    let config = match Config::from_vars(vars) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cvbot: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Cmd::Config) => {
            print_config(&config);
            ExitCode::SUCCESS
        }
        Some(Cmd::Run { demo }) => serve(config, cli.demo || demo),
        None => serve(config, cli.demo),
    }
}

#[allow(clippy::print_stdout)] // `cvbot config` prints to stdout by design: it is the command's output.
fn print_config(config: &Config) {
    for (name, value) in config.describe() {
        println!("{name}={value}");
    }
}

fn serve(config: Config, demo: bool) -> ExitCode {
    init_tracing(&config.log_level);
    let runtime = match cvbot::app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cvbot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let listeners = match cvbot::Listeners::bind(&config) {
            Ok(l) => l,
            Err(e) => {
                error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        let chat_input = if stdin_wanted(config.chat_stdin) {
            match cvbot::chat::stdin_reader() {
                Ok(input) => {
                    info!("type chat commands here, e.g. `doorway#1.threshold: 89` or `!admin routes`");
                    Some(input)
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the terminal; no chat from the terminal");
                    None
                }
            }
        } else {
            None
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        match cvbot::run(config, listeners, Extras { chat_input, demo }, shutdown).await {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            // The supervisor has logged it, as one line naming the other host; a copy would only confuse.
            Err(e) if e.downcast_ref::<cvbot::redis_link::presence::DuplicateInstance>().is_some() => {
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) if e.downcast_ref::<StartupError>().is_some() => {
                error!("{e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) => {
                error!("exiting after a failure: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    // Nothing may keep the process alive once `run` has returned: the standard-input thread is never
    // joined, and whatever the runtime still holds gets a bounded moment.
    runtime.shutdown_timeout(RUNTIME_LINGER);
    code
}

/// `auto`: read chat from stdin when it is a terminal or a pipe, not when it is /dev/null or a file.
fn stdin_wanted(mode: StdinMode) -> bool {
    match mode {
        StdinMode::On => true,
        StdinMode::Off => false,
        StdinMode::Auto => std::io::stdin().is_terminal() || stdin_is_pipe(),
    }
}

#[cfg(unix)]
fn stdin_is_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(not(unix))]
fn stdin_is_pipe() -> bool {
    false
}

/// Cancels `shutdown` on SIGINT or SIGTERM; from then on (or from a fatal error's cancellation) the
/// exit watchdog runs.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => info!("SIGINT: shutting down"),
                    _ = term.recv() => info!("SIGTERM: shutting down"),
                    () = shutdown.cancelled() => {}
                }
            }
            Err(_) => {
                tokio::select! {
                    _ = ctrl_c => info!("SIGINT: shutting down"),
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = ctrl_c => info!("SIGINT: shutting down"),
            () = shutdown.cancelled() => {}
        }
    }
    shutdown.cancel();
    arm_exit_watchdog();
}

/// Ends the process [`EXIT_DEADLINE`] from now unless it has ended by itself: a plain thread, so a
/// stuck runtime cannot hold it up.
fn arm_exit_watchdog() {
    let armed = std::thread::Builder::new().name("cvbot-exit-watchdog".into()).spawn(|| {
        std::thread::sleep(EXIT_DEADLINE);
        error!("shutdown did not finish within {EXIT_DEADLINE:?}; exiting now");
        std::process::exit(EXIT_FAILURE);
    });
    if let Err(e) = armed {
        warn!(error = %e, "cannot start the exit watchdog; shutdown relies on the grace period alone");
    }
}

fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("cvbot={level},warp=warn,{level}")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever the level, twitch-irc's raw-line tracing (which carries the token) stays off.
    let filter = match cvbot::twitch::LOG_DIRECTIVE.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
