//! Stops what a test binary started when the binary ends, however it ends.
//!
//! A watchdog shell holds the read end of a pipe whose write end only the test
//! process has. The process hands it PIDs; when the process ends (success, a
//! panicking test, a signal), the pipe closes and the watchdog runs an optional
//! teardown script, stops the PIDs (TERM, then KILL after 5 s) and removes the
//! directory unless [`KEEP_ENV`] is set or something is still mounted under it. It ignores SIGINT and SIGHUP so that
//! Ctrl-C in a terminal still cleans up.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{Context, bail};

/// Set to keep the harness's directory (certificates, kubeconfig, logs) after
/// the tests end; its path is printed at start.
pub const KEEP_ENV: &str = "WASMPLUG_E2E_KEEP";

const SCRIPT: &str = r#"
    trap '' INT HUP
    dir=$1
    # Whether any of the processes runs (a zombie waiting to be reaped does not).
    running() {
        for pid in "$@"; do
            stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
            case "${stat##*) }" in Z*) ;; *) return 0 ;; esac
        done
        return 1
    }
    if [ -n "$LOCK" ]; then
        exec 9<"$LOCK"
        flock -w 300 9 || { echo "busy"; exit 1; }
    fi
    echo "started"
    pids=""
    while read -r pid; do pids="$pids $pid"; done
    if [ -n "$TEARDOWN" ]; then
        bash "$TEARDOWN" "$dir" >"$dir/teardown.log" 2>&1 || echo "teardown failed: see $dir/teardown.log" >&2
    fi
    [ -n "$pids" ] && kill $pids 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        running $pids || break
        sleep 0.5
    done
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    # Never remove through a mount that is still there (a volume could be a
    # directory of the machine's).
    if awk -v dir="$dir" '$5 == dir || index($5, dir "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo "wasmplug-e2e: mounts remain under $dir (see $dir/teardown.log); not removing it" >&2
    elif [ -z "$KEEP" ]; then
        rm -rf "$dir"
    fi
"#;

/// What the watchdog does besides stopping PIDs.
#[derive(Debug, Default)]
pub(crate) struct Duties {
    /// A script run with the directory as its argument before the PIDs are stopped.
    pub teardown: Option<PathBuf>,
    /// A path held with `flock` for the watchdog's whole life (waiting up to five
    /// minutes for it), so that only one harness at a time uses what cannot be
    /// shared on a machine.
    pub lock: Option<PathBuf>,
}

#[derive(Debug)]
pub(crate) struct Watchdog {
    pipe: ChildStdin,
    child: Child,
}

impl Watchdog {
    pub fn spawn(dir: &Path, duties: Duties) -> anyhow::Result<Self> {
        let mut child = Command::new("sh")
            .args(["-c", SCRIPT, "wasmplug-e2e-watchdog"])
            .arg(dir)
            .env("KEEP", std::env::var_os(KEEP_ENV).unwrap_or_default())
            .env("TEARDOWN", duties.teardown.as_deref().unwrap_or(Path::new("")))
            .env("LOCK", duties.lock.as_deref().unwrap_or(Path::new("")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("failed to start the watchdog shell (sh)")?;
        let pipe = child.stdin.take().context("the watchdog has no stdin pipe")?;
        let stdout = child.stdout.take().context("the watchdog has no stdout pipe")?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).context("failed to read from the watchdog")?;
        if first.trim() != "started" {
            let lock = duties.lock.unwrap_or_default();
            bail!(
                "another wasmplug test cluster holds {} and did not end within five minutes; \
                 stop it (or its test binary) first",
                lock.display()
            );
        }
        Ok(Watchdog { pipe, child })
    }

    /// Makes the watchdog stop `pid` when this process ends.
    pub fn guard(&mut self, pid: u32) -> anyhow::Result<()> {
        writeln!(self.pipe, "{pid}").context("failed to hand a PID to the watchdog")
    }

    pub fn guard_child(&mut self, child: &Child) -> anyhow::Result<()> {
        self.guard(child.id())
    }

    /// Closes the pipe now and waits until the watchdog has done everything.
    pub fn finish(self) -> anyhow::Result<()> {
        let Watchdog { pipe, mut child } = self;
        drop(pipe);
        child.wait().context("failed to wait for the watchdog")?;
        Ok(())
    }
}
