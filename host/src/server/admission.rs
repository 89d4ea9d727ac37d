//! Who may use the host's memory and CPU now: a byte budget for request bodies
//! in flight, taken before a body is read; a slot among the host's concurrent
//! calls; and one among the calls of the same format, so one format (one
//! tenant's plugin, or one attacker's favourite) can never take every slot.
//! Nobody waits for any of them longer than the queue timeout: then the answer
//! is 503 `busy`.
//!
//! It decides admission only; reading bodies and calling handlers happen
//! elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Body bytes are counted in units of this many bytes.
const BODY_UNIT: usize = 1024;

/// The host's admission state.
#[derive(Debug)]
pub(super) struct Admission {
    bodies: Arc<Semaphore>,
    calls: Arc<Semaphore>,
    per_format: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_format_cap: usize,
    queue_timeout: Duration,
}

/// Budget units holding `bytes`.
fn units(bytes: usize) -> usize {
    bytes.div_ceil(BODY_UNIT)
}

/// Permission to run one call; dropping it frees the slots. It moves with the
/// call onto its thread, so a caller who goes away does not free the slot of a
/// call that still runs.
#[derive(Debug)]
pub(super) struct CallSlot {
    _format: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

/// Room for one request body; it moves with the body.
pub(super) type BodyRoom = OwnedSemaphorePermit;

impl Admission {
    pub(super) fn new(body_budget: usize, calls: usize, per_format: usize, queue_timeout: Duration) -> Self {
        Admission {
            bodies: Arc::new(Semaphore::new(body_budget.div_ceil(BODY_UNIT).max(1))),
            calls: Arc::new(Semaphore::new(calls.max(1))),
            per_format: Mutex::new(HashMap::new()),
            per_format_cap: per_format.clamp(1, calls.max(1)),
            queue_timeout,
        }
    }

    /// Reserves room for a body of up to `bytes` before it is read.
    pub(super) async fn body(&self, bytes: usize) -> Result<BodyRoom, ApiError> {
        self.reserve(units(bytes).max(1)).await
    }

    /// Grows `room` to hold `bytes`, waiting for the difference.
    pub(super) async fn grow(&self, room: &mut BodyRoom, bytes: usize) -> Result<(), ApiError> {
        let (needed, held) = (units(bytes), room.num_permits());
        if needed > held {
            room.merge(self.reserve(needed - held).await?);
        }
        Ok(())
    }

    async fn reserve(&self, units: usize) -> Result<BodyRoom, ApiError> {
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        self.wait(self.bodies.clone().acquire_many_owned(units), || "room for the request body".to_owned()).await
    }

    /// A call slot for format `key`: the format's own first, then the host's.
    pub(super) async fn call(&self, key: &str) -> Result<CallSlot, ApiError> {
        let format = {
            let mut slots = self.per_format.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.entry(key.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.per_format_cap))).clone()
        };
        let cap = self.per_format_cap;
        let format = self.wait(format.acquire_owned(), || format!("one of the {cap} call slots of {key:?}")).await?;
        let host = self.wait(self.calls.clone().acquire_owned(), || "call slot".to_owned()).await?;
        Ok(CallSlot { _format: format, _host: host })
    }

    /// Refuses everything from now on (the host is shutting down).
    pub(super) fn close(&self) {
        self.bodies.close();
        self.calls.close();
    }

    async fn wait<P>(
        &self,
        acquire: impl Future<Output = Result<P, tokio::sync::AcquireError>>,
        what: impl FnOnce() -> String,
    ) -> Result<P, ApiError> {
        match tokio::time::timeout(self.queue_timeout, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => {
                Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the host is shutting down"))
            }
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("the host is busy: no {} within {:?}; retry later", what(), self.queue_timeout),
            )),
        }
    }
}
