//! Reading what a running service answers: its metrics and JSON bodies.

/// The Prometheus text a service serves at `{base}/metrics`.
pub async fn scrape_metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of an unlabelled sample `name` in Prometheus text, if present.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Parses a JSON response body.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    response.json().await.unwrap()
}
