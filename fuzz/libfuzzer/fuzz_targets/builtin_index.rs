#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmplug_fuzz::builtin_index(data));
