//! What one call into a format may spend, and how it refuses.
//!
//! Builtin formats run natively on anonymous uploads, so each call is bounded
//! the way a plugin call is: a wall-clock deadline, checked as archives are read
//! and documents walked; a cap on the bytes inflated from compressed data across
//! the whole call (the members skipped on the way included); and a cap on the
//! archive entries walked. Memory follows from those caps and the request body:
//! at most one archive member ([`crate::archive::MAX_ENTRY_BYTES`]) is kept, and
//! XML is walked under fixed caps ([`crate::xml`]).

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// The limits of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time of the call; `None` when something else bounds it (a
    /// plugin's host).
    pub time: Option<Duration>,
    /// Bytes inflated from compressed data, in total.
    pub inflated_bytes: u64,
    /// Archive entries walked, in total.
    pub entries: u64,
}

impl Limits {
    /// 5 s, 128 MiB inflated, 100 000 entries.
    pub const DEFAULT: Limits =
        Limits { time: Some(Duration::from_secs(5)), inflated_bytes: 128 << 20, entries: 100_000 };

    /// Inside a WebAssembly plugin, whose host bounds its time (and memory).
    pub const IN_PLUGIN: Limits = Limits { time: None, ..Limits::DEFAULT };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The budget of one call: its limits and what is left of them.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    deadline: Option<Instant>,
    inflated: Cell<u64>,
    entries: Cell<u64>,
    /// The first limit the call ran into, if any.
    exhausted: Cell<Option<Exceeded>>,
}

impl Budget {
    /// A budget starting now.
    pub fn new(limits: Limits) -> Self {
        let deadline = limits.time.map(|time| Instant::now() + time);
        Budget { limits, deadline, inflated: Cell::new(0), entries: Cell::new(0), exhausted: Cell::new(None) }
    }

    /// The first limit this call ran into, if any (for readers that report the
    /// failure of a wrapped reader only as text).
    pub fn exhausted(&self) -> Option<Exceeded> {
        self.exhausted.get()
    }

    /// Fails once the call's time is up.
    pub fn check_time(&self) -> Result<(), Exceeded> {
        match (self.deadline, self.limits.time) {
            (Some(deadline), Some(limit)) if Instant::now() >= deadline => self.exceed(Exceeded::Time(limit)),
            _ => Ok(()),
        }
    }

    fn exceed(&self, exceeded: Exceeded) -> Result<(), Exceeded> {
        if self.exhausted.get().is_none() {
            self.exhausted.set(Some(exceeded));
        }
        Err(exceeded)
    }

    /// Counts `bytes` more inflated bytes.
    pub fn inflate(&self, bytes: u64) -> Result<(), Exceeded> {
        let total = self.inflated.get().saturating_add(bytes);
        self.inflated.set(total);
        if total > self.limits.inflated_bytes {
            return self.exceed(Exceeded::InflatedBytes(self.limits.inflated_bytes));
        }
        self.check_time()
    }

    /// Counts one more archive entry.
    pub fn entry(&self) -> Result<(), Exceeded> {
        self.count_entries(1)
    }

    /// Counts `count` archive entries at once (an archive that declares them).
    pub fn count_entries(&self, count: u64) -> Result<(), Exceeded> {
        let total = self.entries.get().saturating_add(count);
        self.entries.set(total);
        if total > self.limits.entries {
            return self.exceed(Exceeded::Entries(self.limits.entries));
        }
        self.check_time()
    }
}

/// A limit of [`Limits`] that a call ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Time(Duration),
    InflatedBytes(u64),
    Entries(u64),
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Time(limit) => write!(f, "the call exceeded its time limit of {limit:?}"),
            Exceeded::InflatedBytes(limit) => {
                write!(f, "the artifact unpacks to more than {limit} bytes, the most a builtin format reads")
            }
            Exceeded::Entries(limit) => {
                write!(f, "the archive has more than {limit} entries, the most a builtin format walks")
            }
        }
    }
}

/// Why a format did not accept an artifact or produce an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The input is wrong; the text says why and what is expected.
    Rejected(String),
    /// The call ran out of its budget.
    Exceeded(Exceeded),
}

impl Refusal {
    /// Prefixes a rejection's text with `context` (a budget stays as it is).
    pub fn context(self, context: &str) -> Refusal {
        match self {
            Refusal::Rejected(reason) => Refusal::Rejected(format!("{context}: {reason}")),
            exceeded => exceeded,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Rejected(reason) => f.write_str(reason),
            Refusal::Exceeded(exceeded) => exceeded.fmt(f),
        }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Rejected(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::Rejected(reason.to_owned())
    }
}

impl From<Exceeded> for Refusal {
    fn from(exceeded: Exceeded) -> Self {
        Refusal::Exceeded(exceeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_counted_across_the_call() {
        let budget = Budget::new(Limits { time: None, inflated_bytes: 10, entries: 2 });
        assert_eq!(budget.inflate(6), Ok(()));
        assert_eq!(budget.inflate(5), Err(Exceeded::InflatedBytes(10)));
        assert_eq!(budget.entry(), Ok(()));
        assert_eq!(budget.count_entries(2), Err(Exceeded::Entries(2)));
        let spent = Budget::new(Limits { time: Some(Duration::ZERO), ..Limits::DEFAULT });
        assert_eq!(spent.check_time(), Err(Exceeded::Time(Duration::ZERO)));
        assert_eq!(Refusal::from("bad").context("not a gem").to_string(), "not a gem: bad");
        assert_eq!(Refusal::from(Exceeded::Entries(2)).context("x"), Refusal::Exceeded(Exceeded::Entries(2)));
    }
}
