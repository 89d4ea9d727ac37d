//! The short fuzz run of CI, on stable: every committed input of every target
//! (`fuzz/seeds/<target>/`, written by `fuzz-seeds`, and `fuzz/corpus/<target>/`,
//! what libFuzzer found from them), then a bounded number of seeded mutations
//! of them (bit flips, byte changes, insertions, deletions, truncations and
//! splices). A failure prints the input that broke the target; add it to the
//! corpus once fixed.

use std::path::{Path, PathBuf};

/// Mutations per target, spread over its corpus inputs.
const MUTATIONS: usize = 20_000;

/// The inputs in `fuzz/<kind>/<target>/` (none when it does not exist).
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// Every committed input of `target`: its seeds and its corpus.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = inputs("seeds", target);
    all.extend(inputs("corpus", target));
    all
}

/// xorshift64*: reproducible, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len());
        match rng.below(6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at] = rng.next() as u8,
            2 => out.insert(at, rng.next() as u8),
            3 if !out.is_empty() => drop(out.remove(at)),
            4 => out.truncate(at),
            _ => {
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1).min(64);
                out.splice(at..at, other[from..from + len].iter().copied());
            }
        }
    }
    out
}

/// The builtin seeds are artifacts each format accepts, so fuzzing starts deep
/// inside every parser rather than at its first check.
#[test]
fn the_builtin_seeds_are_accepted_by_their_formats() {
    let seeds = inputs("seeds", "builtin");
    assert!(seeds.len() >= 9, "a seed per builtin shape");
    for (path, input) in seeds {
        let (key, artifact_path, body) = wasmplug_fuzz::builtin_input(&input).expect("a seed has a selector");
        let format = wasmplug_formats::by_key(key).expect("a format");
        let budget = wasmplug_formats::Budget::new(wasmplug_formats::Limits::DEFAULT);
        let verdict = format.validate(&artifact_path, body, &budget);
        assert_eq!(verdict, Ok(()), "{} ({key} {artifact_path})", path.display());
    }
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    for (target, run) in wasmplug_fuzz::TARGETS {
        let inputs = corpus(target);
        assert!(!inputs.is_empty(), "{target} has seeds");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
        let per_input = (MUTATIONS / inputs.len()).max(10);
        for (path, input) in &inputs {
            let replay = std::panic::catch_unwind(|| run(input));
            assert!(replay.is_ok(), "{target} fails on {}", path.display());
            for _ in 0..per_input {
                let other = &inputs[rng.below(inputs.len())].1;
                let mutated = mutate(input, other, &mut rng);
                if std::panic::catch_unwind(|| run(&mutated)).is_err() {
                    panic!("{target} fails on a mutation of {}: {mutated:?}", path.display());
                }
            }
        }
    }
}
