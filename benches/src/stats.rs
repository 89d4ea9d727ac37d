//! Timing: run a closure many times and summarize the durations.

use std::time::{Duration, Instant};

/// Median, 95th and 99th percentile of repeated runs.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: Duration,
    pub p95: Duration,
    pub p99: Duration,
}

impl Summary {
    /// The summary of durations measured elsewhere (at least one).
    pub fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let at = |percent: usize| times[(times.len() * percent / 100).min(times.len() - 1)];
        Summary { median: at(50), p95: at(95), p99: at(99) }
    }

    pub fn ratio_to(&self, baseline: &Summary) -> f64 {
        self.median.as_secs_f64() / baseline.median.as_secs_f64()
    }
}

/// Runs `f` `warmup` times untimed, then `runs` times timed.
pub fn measure(warmup: usize, runs: usize, mut f: impl FnMut()) -> Summary {
    for _ in 0..warmup {
        f();
    }
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    Summary::of(times)
}

/// Like [`measure`] for two closures whose times are compared: their runs
/// alternate, so drift in the machine's speed affects both alike.
pub fn measure_pair(warmup: usize, runs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Summary, Summary) {
    for _ in 0..warmup {
        a();
        b();
    }
    let (mut times_a, mut times_b) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let started = Instant::now();
        a();
        times_a.push(started.elapsed());
        let started = Instant::now();
        b();
        times_b.push(started.elapsed());
    }
    (Summary::of(times_a), Summary::of(times_b))
}

pub fn format(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else if micros < 10_000_000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{:.1} s", micros / 1e6)
    }
}
