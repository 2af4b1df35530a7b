//! A fuzzed sequence of manager calls: no panic, no hang, every accepted operation completed
//! exactly once, no descriptor left open (`ai_os_kernel_conformance::fuzz::op_sequence_case`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ai_os_kernel_conformance::fuzz::op_sequence_case(data));
