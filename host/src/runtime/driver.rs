//! Where a call's wall-clock limit is kept, whatever the guest does.
//!
//! Wasmtime runs the guest on a fiber inside the call's future. A guest that
//! computes yields at every epoch tick and is stopped when its ticks run out; a
//! guest that waits in WASI (a sleep, a `poll` on a clock) is suspended in a
//! timer, and the call's deadline drops its future, which unwinds the guest.
//!
//! The host's server awaits that future on its own workers ([`within`]).
//! Every other caller (a load, the operator's validation, a test) blocks a
//! thread on it ([`Driver::run`], never from an async worker); its timers, and
//! the deadline's, are driven by one small tokio runtime owned by the plugin
//! runtime, so plugins keep their limits in any caller.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};

/// Runs calls under their deadline. Dropping it stops its timer thread.
#[derive(Debug)]
pub(super) struct Driver {
    /// `Some` until dropped; taken to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    handle: Handle,
}

impl Driver {
    pub(super) fn new() -> std::io::Result<Self> {
        let runtime =
            Builder::new_multi_thread().worker_threads(1).thread_name("wasmplug-call-timers").enable_time().build()?;
        let handle = runtime.handle().clone();
        Ok(Driver { runtime: Some(runtime), handle })
    }

    /// Runs `call` on this thread until it finishes or `limit` passes; `None`
    /// when the deadline came first (the call's future is dropped, whatever it
    /// was waiting for). Must not be called from an async task.
    pub(super) fn run<F: Future>(&self, limit: Duration, call: F) -> Option<F::Output> {
        self.handle.block_on(within(limit, call))
    }
}

/// `call` until it finishes or `limit` passes, on the caller's executor (a
/// tokio runtime with timers); `None` when the deadline came first.
pub(super) async fn within<F: Future>(limit: Duration, call: F) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut call = std::pin::pin!(call);
    // Most calls never wait or yield: they finish in their first poll (the
    // epoch deadline bounds that), and no timer is armed for them.
    if let Poll::Ready(output) = futures::poll!(call.as_mut()) {
        return Some(output);
    }
    tokio::time::timeout_at(deadline, call).await.ok()
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
