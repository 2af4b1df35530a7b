//! Replays the fuzz targets' bodies (`ai_os_kernel_conformance::fuzz`, driven by `cargo fuzz` in
//! `fuzz/`) on every build: the saved corpus in `fuzz/corpus/`, then inputs from a fixed-seed
//! generator biased towards the fragments that make hostile paths and call sequences.

use std::path::Path;
use std::time::Duration;

use ai_os_kernel_conformance::fuzz::{op_sequence_case, path_case};
use ai_os_kernel_conformance::support::within;

/// xorshift64*: a fixed, dependency-free stream of bytes.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn input(&mut self, max_len: u64, token_bias: bool) -> Vec<u8> {
        let len = self.next() % max_len + 1;
        (0..len)
            .map(|_| {
                let r = self.next();
                match r % 4 {
                    0 | 1 if token_bias => 0xE0 | (r >> 8) as u8,
                    2 if token_bias => b"abf.-_/\\"[(r >> 8) as usize % 8],
                    _ => (r >> 16) as u8,
                }
            })
            .collect()
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect()
}

#[test]
fn fuzz_replay_path_resolution() {
    within(Duration::from_secs(240), "path replay", || {
        let saved = corpus("path_resolution");
        let mut bytes = Bytes(0x9E37_79B9_7F4A_7C15);
        let generated: Vec<Vec<u8>> = (0..4000).map(|i| bytes.input(48, i % 4 != 0)).collect();
        for input in saved.iter().chain(&generated) {
            path_case(input);
        }
        eprintln!("path_resolution: {} saved + {} generated inputs", saved.len(), generated.len());
    });
}

#[test]
fn fuzz_replay_op_sequences() {
    within(Duration::from_secs(240), "op sequence replay", || {
        let saved = corpus("op_sequence");
        let mut bytes = Bytes(0xD1B5_4A32_D192_ED03);
        let generated: Vec<Vec<u8>> = (0..300).map(|_| bytes.input(120, false)).collect();
        for input in saved.iter().chain(&generated) {
            op_sequence_case(input);
        }
        eprintln!("op_sequence: {} saved + {} generated inputs", saved.len(), generated.len());
    });
}
