//! Trust invariant: no byte a call leaves in memory reaches the next call, on a
//! host whose memory the kernel may swap out too. wasmtime's page-scan reset
//! (Linux 6.7+) zeroes the pages a call wrote that are *present*; a page
//! swapped out while the call held it is neither zeroed nor unmapped, and the
//! next call on that slot would fault it back in, secret and all
//! (bytecodealliance/wasmtime#14357).
//!
//! Turns a swap file on for the length of the test (needs root, as the node
//! tests do), and asks the kernel to page this process out while a call holds
//! its secret.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasmplug_host::runtime::{CallLimits, EngineSettings, MemoryReset, Runtime};

#[test]
fn a_page_swapped_out_during_a_call_never_reaches_the_next_call() {
    let _swap = SwapFile::on(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let runtime = Runtime::new(EngineSettings::default()).expect("engine");
    // This process may swap (the test pages it out below), so the page scan
    // is off, and the host says why.
    let MemoryReset::Unmap { reason } = runtime.memory_reset() else {
        panic!("a host whose memory may be swapped out resets it with the page scan");
    };
    assert!(reason.contains("swap area(s) are on"), "{reason}");
    let plugin = std::sync::Arc::new(
        runtime.load(&support::read_example("misbehaving"), CallLimits::DEFAULT).expect("the plugin loads"),
    );
    for attempt in 0..4 {
        let call = {
            let plugin = plugin.clone();
            std::thread::spawn(move || plugin.validate("leave-secret-and-wait", b""))
        };
        // The guest has written its secret and sleeps for a second.
        std::thread::sleep(Duration::from_millis(400));
        page_out_this_process();
        let swapped = swapped_kib();
        assert!(swapped > 2048, "the secret's pages were swapped out: {swapped} KiB of this process are in swap");
        assert_eq!(call.join().expect("the call's thread"), Ok(Ok(())));
        assert_eq!(
            plugin.validate("find-secret", b""),
            Ok(Ok(())),
            "attempt {attempt}: the next call's memory is zero, though the last call's pages were swapped out"
        );
    }
}

/// A swap area, on while this lives.
struct SwapFile(PathBuf);

impl SwapFile {
    fn on(dir: &Path) -> Self {
        let path = dir.join(format!("wasmplug-swap-test-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 64 << 20]).expect("write the swap file");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
        run("mkswap", &path);
        let swap = SwapFile(path);
        run("swapon", &swap.0);
        swap
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(program: &str, path: &Path) {
    let output = Command::new(program).arg(path).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed (this test needs root to turn swap on): {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asks the kernel to swap out every private writable anonymous mapping of
/// this process, the plugins' linear memories among them.
fn page_out_this_process() {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (range, perms) = (fields[0], fields[1]);
        let anonymous = fields.get(5).is_none_or(|name| name.starts_with("[anon") || *name == "[heap]");
        if !perms.starts_with("rw") || !perms.ends_with('p') || !anonymous {
            continue;
        }
        let (start, end) = range.split_once('-').expect("start-end");
        let start = usize::from_str_radix(start, 16).expect("hex");
        let end = usize::from_str_radix(end, 16).expect("hex");
        // SAFETY: MADV_PAGEOUT only moves pages to swap; their contents and
        // mappings stay as they are.
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}

/// How much of this process is in swap.
fn swapped_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmSwap:")).expect("VmSwap");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmSwap in kB")
}
