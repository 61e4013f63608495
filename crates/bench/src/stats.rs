//! Summaries of repeated measurements.

use std::time::Duration;

/// min / median / max of a series.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let median = if v.is_empty() {
            f64::NAN
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Spread {
            min: v.first().copied().unwrap_or(f64::NAN),
            median,
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub fn of_durations(values: &[Duration]) -> Spread {
        Spread::of(&values.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
    }

    /// `min / median / max` with `digits` decimals and a unit.
    pub fn show(&self, digits: usize, unit: &str) -> String {
        format!(
            "{:.digits$} / **{:.digits$}** / {:.digits$} {unit}",
            self.min, self.median, self.max
        )
    }
}

/// The value at quantile `q` (0..=1) of a series.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((v.len() - 1) as f64 * q).round() as usize;
    v[rank.min(v.len() - 1)]
}
