//! Min, median and max of a series of durations, in milliseconds.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 { ms[n / 2] } else { (ms[n / 2 - 1] + ms[n / 2]) / 2.0 };
        Stats { min_ms: ms[0], median_ms: median, max_ms: ms[n - 1], runs: n }
    }

    /// `median (min..max)`.
    pub fn show(&self) -> String {
        if self.runs == 0 {
            return "-".into();
        }
        format!("{:.2} ({:.2}..{:.2})", self.median_ms, self.min_ms, self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        let d = |ms| Duration::from_millis(ms);
        let s = Stats::of(&[d(3), d(1), d(2)]);
        assert_eq!((s.min_ms, s.median_ms, s.max_ms), (1.0, 2.0, 3.0));
        assert_eq!(Stats::of(&[d(1), d(3)]).median_ms, 2.0);
        assert_eq!(Stats::of(&[]).show(), "-");
    }
}
