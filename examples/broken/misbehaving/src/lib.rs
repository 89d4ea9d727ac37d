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
//! - anything else: succeeds

wit_bindgen::generate!({
    path: "../../../wit",
    world: "format-plugin",
});

use std::hint::black_box;

use wasip2::clocks::monotonic_clock;

use exports::artifact_keeper::format::handler::{Guest, Metadata};

struct Misbehaving;

impl Guest for Misbehaving {
    fn format_key() -> String {
        "misbehaving".to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        Self::validate(path.clone(), data.clone())?;
        Ok(Metadata {
            path,
            version: None,
            content_type: "application/octet-stream".to_owned(),
            size_bytes: data.len() as u64,
            checksum_sha256: None,
        })
    }

    fn validate(path: String, _data: Vec<u8>) -> Result<(), String> {
        match path.as_str() {
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
            _ => Ok(()),
        }
    }

    fn generate_index(_artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(None)
    }
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
