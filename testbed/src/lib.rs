//! # cvbot-testbed: private Redis processes for tests and the bench
//!
//! * [`redis_process`]: one `redis-server` on a free port of 127.0.0.1 ([`redis_process::RedisProcess`]),
//!   and the pieces every launcher shares: [`redis_process::free_port`],
//!   [`redis_process::wait_for_ping`], [`redis_process::connect`].
//! * [`topology`]: a Sentinel-managed master ([`topology::SentinelSet`]) and a six-node Cluster
//!   ([`topology::ClusterSet`]), with the faults they exist for and the waits for the failover.
//!
//! Every process it starts is killed when its handle drops, and keeps nothing on disk beyond a
//! temporary directory that goes with it. It needs `redis-server` on `PATH` (a Sentinel set runs it
//! with `--sentinel`), and `redis-cli` for a Cluster (`--cluster create`).

pub mod redis_process;
pub mod topology;
