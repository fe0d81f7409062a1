//! Latencies: recorded in microseconds into HDR histograms, reported as
//! percentiles in milliseconds.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;
use tokio::task::JoinHandle;

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant digits.
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(histogram) => histogram,
        Err(error) => panic!("constant histogram bounds refused: {error}"),
    }
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return Self {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        Self {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// What one lane of a ceiling measured: its latency histogram and its
/// count (of confirms, of rows, ...).
pub type LaneResult = (Histogram<u64>, u64);

/// Waits for every lane of a ceiling and merges what they measured.
pub async fn merge_lanes<E>(
    lanes: Vec<JoinHandle<Result<LaneResult, E>>>,
) -> anyhow::Result<LaneResult>
where
    E: Into<anyhow::Error>,
{
    let mut histogram = new_histogram();
    let mut total = 0;
    for lane in lanes {
        let (lane_histogram, lane_total) = lane.await?.map_err(Into::into)?;
        let _ = histogram.add(&lane_histogram);
        total += lane_total;
    }
    Ok((histogram, total))
}
