//! The fuzz targets of the parsers that face strangers, as plain functions: libFuzzer's binaries
//! (`fuzz_targets/`) and the stable smoke runner (`src/bin/smoke.rs`) call the same code. It knows
//! the parsers' public entry points only; nothing here is linked into the bot.

pub mod mutate;
pub mod targets;
