//! The `cvbot-bench` binary: measures latency, throughput and memory against the Redis/UDP floor
//! and prints the report ([`cvbot_bench::run`], [`cvbot_bench::render`]). Use a release build: a
//! debug build says at the top of its report that its figures are not representative.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Measure cvbot's latency, throughput and memory against the Redis/UDP floor (use a release build).
#[derive(Debug, Parser)]
#[command(name = "cvbot-bench", version)]
struct Cli {
    /// A smoke run that finishes in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Write machine-readable results to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw latency distributions (floor vs cvbot) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Use this Redis instead of starting a private redis-server.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Measure only this row (with --quick: its quick size).
    #[arg(long, value_enum, value_name = "ROW", conflicts_with = "plot")]
    only: Option<cvbot_bench::Only>,
    /// Serve one bot instead of measuring: how the bench starts its child instances.
    #[arg(long = "serve-instance", hide = true, exclusive = true)]
    serve_instance: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.serve_instance {
        return match cvbot_bench::child::serve_instance() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cvbot-bench {}: {e:#}", cvbot_bench::child::SERVE_INSTANCE);
                ExitCode::FAILURE
            }
        };
    }
    let Cli { quick, json, plot, redis_url, only, serve_instance: _ } = cli;
    bench(&cvbot_bench::BenchOptions { quick, json, plot, redis_url }, only)
}

#[allow(clippy::print_stdout)] // The bench's table is the command's output.
fn bench(options: &cvbot_bench::BenchOptions, only: Option<cvbot_bench::Only>) -> ExitCode {
    init_tracing("cvbot_bench=info,warn");
    let runtime = match cvbot::app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cvbot-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = match only {
        Some(only) => runtime.block_on(cvbot_bench::run_only(options, only)).map(|r| cvbot_bench::render_only(&r)),
        None => runtime.block_on(cvbot_bench::run(options)).map(|r| cvbot_bench::render(&r)),
    };
    match table {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cvbot-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(directives: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever the level, twitch-irc's raw-line tracing (which carries the token) stays off.
    let filter = match cvbot::twitch::LOG_DIRECTIVE.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
