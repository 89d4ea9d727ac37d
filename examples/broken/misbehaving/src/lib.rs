//! A plugin that misbehaves on request, for the host's isolation tests: the path
//! passed to `validate` says what to do.
//!
//! - `trap`: panics (the component traps)
//! - `loop`: never returns (the time limit must stop it)
//! - `alloc`: grows memory towards 1 GiB (the memory limit must stop it)
//! - `stack`: recurses without end (the stack overflows)
//! - `print`: writes 100 KiB to stdout, then succeeds (output is capped, not fatal)
//! - `slow`: sleeps 300 ms, then succeeds (a call that is in flight for a while)
//! - `sleep`: sleeps 20 s in `wasi:clocks` (the time limit must hold while no
//!   wasm runs)
//! - `poll`: waits 20 s in `wasi:io/poll` on a clock pollable
//! - `pollables`: creates 100 000 pollables (host-side resources of the call)
//! - `random`: asks the host for 48 MiB of random bytes (host memory of the call)
//! - `leave-secret`: fills 2 MiB of its memory with a marker and leaves it there
//! - `find-secret`: scans all of its linear memory for that marker (what a
//!   call would find if memory crossed calls) and fails naming where it is
//! - `leave-and-find-secret`: both, so it fails (the scan's own check)
//! - `leave-secret-and-wait`: leaves the marker, then sleeps 1 s (time for a
//!   test to have its pages swapped out while the call holds them)
//! - anything else: succeeds
//!
//! `parse-metadata` does the same, then answers with `version` saying how many
//! calls this instance has served, itself included ("1" on a fresh instance).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "format-plugin",
});

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use wasip2::clocks::monotonic_clock;

use exports::artifact_keeper::format::handler::{Guest, Metadata};

struct Misbehaving;

/// Calls this instance has served.
static CALLS: AtomicU32 = AtomicU32::new(0);

impl Guest for Misbehaving {
    fn format_key() -> String {
        "misbehaving".to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        misbehave(&path)?;
        Ok(Metadata {
            path,
            version: Some(calls.to_string()),
            content_type: "application/octet-stream".to_owned(),
            size_bytes: data.len() as u64,
            checksum_sha256: None,
        })
    }

    fn validate(path: String, _data: Vec<u8>) -> Result<(), String> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        misbehave(&path)
    }

    fn generate_index(_artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(None)
    }
}

/// Does what `path` asks for.
fn misbehave(path: &str) -> Result<(), String> {
    match path {
        "trap" => panic!("asked to trap"),
        "loop" => spin_forever(),
        "alloc" => {
            let mut blocks = Vec::new();
            for _ in 0..1024 {
                blocks.push(black_box(vec![1u8; 1 << 20]));
            }
            Err(format!("allocated {} MiB without being stopped", blocks.len()))
        }
        "stack" => Err(format!("recursed to depth {} without overflowing", recurse(0))),
        "slow" => {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(())
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(20));
            Err("slept 20 s without being stopped".to_owned())
        }
        "poll" => {
            let pollable = monotonic_clock::subscribe_duration(20_000_000_000);
            wasip2::io::poll::poll(&[&pollable]);
            Err("polled 20 s without being stopped".to_owned())
        }
        "pollables" => {
            let pollables: Vec<_> = (0..100_000).map(|_| monotonic_clock::subscribe_duration(1)).collect();
            Err(format!("created {} pollables without being stopped", black_box(pollables).len()))
        }
        "random" => {
            let bytes = wasip2::random::random::get_random_bytes(48 << 20);
            Err(format!("got {} random bytes without being stopped", black_box(bytes).len()))
        }
        "print" => {
            for line in 0..1024 {
                println!("{line:04}: {}", "x".repeat(94));
            }
            Ok(())
        }
        "leave-secret" => {
            leave_secret();
            Ok(())
        }
        "find-secret" => find_secret(),
        "leave-secret-and-wait" => {
            leave_secret();
            std::thread::sleep(std::time::Duration::from_secs(1));
            Ok(())
        }
        "leave-and-find-secret" => {
            leave_secret();
            find_secret()
        }
        _ => Ok(()),
    }
}

/// The byte `leave-secret` fills memory with; the run of it `find-secret`
/// looks for is made at run time, so none sits in the module's data.
static SECRET_BYTE: u8 = 0x5a;

/// Fills 2 MiB of fresh heap (more than the host keeps resident between
/// calls) with the secret and leaks it.
fn leave_secret() {
    let secret = vec![black_box(SECRET_BYTE); 2 << 20].into_boxed_slice();
    black_box(Box::leak(secret));
}

/// Fails if any 4 KiB-aligned page of linear memory starts with 64 bytes of
/// the secret.
fn find_secret() -> Result<(), String> {
    let size = linear_memory_bytes();
    let needle = [black_box(SECRET_BYTE); 64];
    for page in (0..size).step_by(4096) {
        // Reading linear memory this program never wrote: in wasm it is plain
        // memory, zero unless something put bytes there.
        let bytes = unsafe { core::slice::from_raw_parts(page as *const u8, 64) };
        if bytes == needle {
            return Err(format!("found a previous call's secret at offset {page:#x}"));
        }
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn linear_memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * 65536
}

/// Built natively (the examples' own `cargo test`), there is no linear memory
/// to scan.
#[cfg(not(target_arch = "wasm32"))]
fn linear_memory_bytes() -> usize {
    0
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

// Unbounded on purpose: the host must stop it with a stack-overflow trap.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))) + 1
}

export!(Misbehaving);
