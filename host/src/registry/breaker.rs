//! When a plugin version counts as broken: trust invariant 3 says a quarantine
//! is a judgement about the plugin, not about one caller's inputs.
//!
//! - A **fault** is the plugin's own failure: a crash (a trap, a panic, host
//!   resources exhausted), or a memory, time or fuel limit hit on an input too
//!   small to explain it (under a quarter of the call's memory limit). A limit
//!   hit on a larger input, any limit a builtin hits (its budget is spent by
//!   the input), and the plugin's own refusals are not faults; successes and
//!   refusals count as healthy calls.
//! - **Quarantine** follows at least [`MIN_FAULTS`] faults within a one-minute
//!   window that are at least half of its calls, so a caller who sends a few
//!   poisoned inputs among other traffic quarantines nothing.
//! - It lasts a **cool-down** (30 s, doubled for each quarantine in a row, at
//!   most 10 min); then one **trial** call goes through: a healthy answer ends
//!   the quarantine, a fault starts a longer one. A new version, re-enabling the
//!   format, or the FormatPlugin annotation `wasmplug.dev/reset-quarantine`
//!   (see docs/operations.md) ends it at once.
//!
//! Pure apart from the clock, which callers pass in.

use std::time::{Duration, Instant};

use crate::handler::HandlerError;
use crate::runtime::CallError;

/// Faults within a window needed for a quarantine.
pub const MIN_FAULTS: u32 = 5;
/// The window faults and calls are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The first cool-down; each quarantine in a row doubles it.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(30);
/// The longest cool-down.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);
/// A trial call that never reported back (its caller went away) is replaced
/// by another after this long.
const TRIAL_GRACE: Duration = Duration::from_secs(60);

/// What one call says about the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Says nothing about the plugin (explained by the input).
    Neutral,
    Fault(String),
}

/// The verdict on `outcome`, a call on `input_bytes` of input by a plugin
/// whose calls may use `memory_bytes`, or by a builtin (`None`: a builtin runs
/// under a budget its input spends, so its limits are always the input's doing).
pub fn verdict<T>(outcome: &Result<T, HandlerError>, input_bytes: usize, memory_bytes: Option<u64>) -> Verdict {
    let error = match outcome {
        Ok(_) | Err(HandlerError::Rejected(_)) => return Verdict::Healthy,
        Err(HandlerError::Failed(error)) => error,
    };
    let small_input = memory_bytes.is_some_and(|memory| (input_bytes as u64).saturating_mul(4) < memory);
    match error {
        CallError::Crashed { .. } | CallError::HostResourceLimit { .. } => Verdict::Fault(error.to_string()),
        CallError::MemoryLimit { .. } | CallError::Timeout { .. } | CallError::FuelExhausted { .. } if small_input => {
            Verdict::Fault(error.to_string())
        }
        _ => Verdict::Neutral,
    }
}

/// Whether a call may go to the plugin now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the trial call after a cool-down.
    Trial,
}

/// What a reported call changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Quarantined { reason: String },
    Recovered,
}

/// The fault record of one plugin version.
#[derive(Debug)]
pub struct Breaker {
    window_start: Instant,
    calls: u32,
    faults: u32,
    /// Quarantines in a row (a trial that faulted continues the row).
    strikes: u32,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    until: Instant,
    reason: String,
    trial_started: Option<Instant>,
}

impl Breaker {
    pub fn new(now: Instant) -> Self {
        Breaker { window_start: now, calls: 0, faults: 0, strikes: 0, open: None }
    }

    /// Why the version is quarantined, while it is (trial or not).
    pub fn quarantine_reason(&self) -> Option<&str> {
        self.open.as_ref().map(|open| open.reason.as_str())
    }

    /// Whether a call may go through at `now`; `Err` says why not.
    pub fn admit(&mut self, now: Instant) -> Result<Admit, String> {
        let Some(open) = &mut self.open else { return Ok(Admit::Yes) };
        if now < open.until {
            let left = open.until - now;
            return Err(format!("{}; a trial call is let through in {}s", open.reason, left.as_secs().max(1)));
        }
        match open.trial_started {
            Some(started) if now.duration_since(started) < TRIAL_GRACE => {
                Err(format!("{}; a trial call is running", open.reason))
            }
            _ => {
                open.trial_started = Some(now);
                Ok(Admit::Trial)
            }
        }
    }

    /// Records a call's verdict.
    pub fn record(&mut self, verdict: Verdict, admitted: Admit, now: Instant) -> Transition {
        if admitted == Admit::Trial {
            return match verdict {
                Verdict::Fault(fault) => self.open(&fault, now),
                Verdict::Healthy | Verdict::Neutral => {
                    self.open = None;
                    self.strikes = 0;
                    self.reset_window(now);
                    Transition::Recovered
                }
            };
        }
        if now.duration_since(self.window_start) >= WINDOW {
            self.reset_window(now);
        }
        match verdict {
            Verdict::Healthy => self.calls += 1,
            Verdict::Neutral => {}
            Verdict::Fault(fault) => {
                self.calls += 1;
                self.faults += 1;
                if self.open.is_none() && self.faults >= MIN_FAULTS && self.faults * 2 >= self.calls {
                    let faults = self.faults;
                    return self.open(&format!("{faults} of its last {} calls failed; last: {fault}", self.calls), now);
                }
            }
        }
        Transition::None
    }

    fn open(&mut self, why: &str, now: Instant) -> Transition {
        self.strikes += 1;
        let cooldown = FIRST_COOLDOWN.saturating_mul(1 << (self.strikes - 1).min(8)).min(MAX_COOLDOWN);
        let reason = format!("quarantined: {why}");
        self.open = Some(Open { until: now + cooldown, reason: reason.clone(), trial_started: None });
        self.reset_window(now);
        Transition::Quarantined { reason }
    }

    fn reset_window(&mut self, now: Instant) {
        self.window_start = now;
        self.calls = 0;
        self.faults = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMORY: Option<u64> = Some(64 << 20);

    fn failed(error: CallError) -> Result<(), HandlerError> {
        Err(HandlerError::Failed(error))
    }

    #[test]
    fn limits_explained_by_a_large_input_are_not_faults() {
        let memory = failed(CallError::MemoryLimit { limit_bytes: 64 << 20 });
        assert!(matches!(verdict(&memory, 1024, MEMORY), Verdict::Fault(_)));
        assert_eq!(verdict(&memory, 16 << 20, MEMORY), Verdict::Neutral);
        let timeout = failed(CallError::Timeout { limit: Duration::from_secs(5) });
        assert_eq!(verdict(&timeout, 60 << 20, MEMORY), Verdict::Neutral);
        assert_eq!(verdict(&timeout, 0, None), Verdict::Neutral, "a builtin's limits are its input's doing");
        let crash = failed(CallError::Crashed { message: "unreachable".into() });
        assert!(matches!(verdict(&crash, 60 << 20, MEMORY), Verdict::Fault(_)), "a crash is the plugin's");
        let large = failed(CallError::InputTooLarge { reason: "x".into() });
        assert_eq!(verdict(&large, 0, None), Verdict::Neutral);
        assert_eq!(verdict(&Err::<(), _>(HandlerError::Rejected("no".into())), 0, None), Verdict::Healthy);
    }

    #[test]
    fn a_few_faults_among_healthy_calls_quarantine_nothing() {
        let start = Instant::now();
        let mut breaker = Breaker::new(start);
        for i in 0..100u32 {
            let verdict = if i % 10 == 0 { Verdict::Fault("boom".into()) } else { Verdict::Healthy };
            assert_eq!(breaker.record(verdict, Admit::Yes, start), Transition::None);
        }
        assert_eq!(breaker.admit(start), Ok(Admit::Yes));
    }

    #[test]
    fn a_broken_plugin_is_quarantined_then_tried_again_after_a_growing_cooldown() {
        let start = Instant::now();
        let mut breaker = Breaker::new(start);
        for _ in 1..MIN_FAULTS {
            assert_eq!(breaker.record(Verdict::Fault("trap".into()), Admit::Yes, start), Transition::None);
        }
        let Transition::Quarantined { reason } = breaker.record(Verdict::Fault("trap".into()), Admit::Yes, start)
        else {
            panic!("the fifth fault quarantines")
        };
        assert_eq!(reason, "quarantined: 5 of its last 5 calls failed; last: trap");
        assert!(breaker.admit(start + Duration::from_secs(29)).expect_err("cooling down").contains("in 1s"));

        // After the cool-down, one trial call; a fault doubles the cool-down.
        let later = start + FIRST_COOLDOWN;
        assert_eq!(breaker.admit(later), Ok(Admit::Trial));
        assert!(breaker.admit(later).expect_err("one trial at a time").contains("trial call is running"));
        assert!(matches!(
            breaker.record(Verdict::Fault("trap".into()), Admit::Trial, later),
            Transition::Quarantined { .. }
        ));
        assert!(breaker.admit(later + FIRST_COOLDOWN).is_err(), "60 s now");
        let again = later + 2 * FIRST_COOLDOWN;
        assert_eq!(breaker.admit(again), Ok(Admit::Trial));
        assert_eq!(breaker.record(Verdict::Healthy, Admit::Trial, again), Transition::Recovered);
        assert_eq!(breaker.admit(again), Ok(Admit::Yes));
        assert_eq!(breaker.quarantine_reason(), None);
    }

    #[test]
    fn a_trial_whose_caller_left_is_replaced() {
        let start = Instant::now();
        let mut breaker = Breaker::new(start);
        for _ in 0..MIN_FAULTS {
            breaker.record(Verdict::Fault("trap".into()), Admit::Yes, start);
        }
        let trial = start + FIRST_COOLDOWN;
        assert_eq!(breaker.admit(trial), Ok(Admit::Trial));
        assert_eq!(breaker.admit(trial + TRIAL_GRACE), Ok(Admit::Trial));
    }
}
