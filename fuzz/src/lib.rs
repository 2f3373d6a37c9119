//! The fuzz targets of the parsers that face strangers, as plain functions: libFuzzer's binaries
//! (`fuzz_targets/`) and the stable smoke runner (`src/bin/smoke.rs`) call the same code. It knows
//! the parsers' public entry points only; nothing here is linked into the bot.

pub mod alloc;
pub mod mutate;
pub mod targets;

/// Every allocation of a fuzz binary goes through this counter, so a target can ask how large the
/// largest single request was while a parser ran (see [`alloc::largest_during`]).
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
