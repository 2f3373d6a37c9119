//! libFuzzer entry point of the `catalog` target: hands every input to `cvbot_fuzz::targets::catalog`, which
//! knows what must hold; this file knows nothing but the libFuzzer macro.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvbot_fuzz::targets::catalog(data));
