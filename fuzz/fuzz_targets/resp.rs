//! libFuzzer entry point of the `resp` target: hands every input to `cvbot_fuzz::targets::resp`, which
//! knows what must hold; this file knows nothing but the libFuzzer macro.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvbot_fuzz::targets::resp(data));
