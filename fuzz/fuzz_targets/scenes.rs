//! libFuzzer entry point of the `scenes` target: hands every input to `cvbot_fuzz::targets::scenes`, which
//! knows what must hold; this file knows nothing but the libFuzzer macro.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvbot_fuzz::targets::scenes(data));
