//! One `Open` of a fuzzed path with fuzzed flags beneath a rooted policy: a descriptor it yields
//! points beneath the root, and nothing outside the root changes
//! (`ai_os_kernel_conformance::fuzz::path_case`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ai_os_kernel_conformance::fuzz::path_case(data));
