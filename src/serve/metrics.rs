//! Prometheus metrics kept in memory and rendered in the text exposition format (0.0.4):
//! request counts by route and status, a latency histogram by route, a prediction score
//! histogram and predictions by class.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket upper bounds in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Score bucket upper bounds.
const SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    scores: Histogram,
    predictions: [u64; 2],
}

/// The server's metrics. One short lock per request; rendering copies nothing large.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one finished request.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests.entry((route, status)).or_default() += 1;
        m.latency
            .entry(route)
            .or_default()
            .observe(&LATENCY_BUCKETS, elapsed.as_secs_f64());
    }

    /// Records predicted probabilities and their classes.
    pub fn predictions(&self, scored: impl IntoIterator<Item = (f64, bool)>) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (p, positive) in scored {
            m.scores.observe(&SCORE_BUCKETS, p);
            m.predictions[usize::from(positive)] += 1;
        }
    }

    /// The exposition text. `ready` and `version` describe the loaded model.
    pub fn render(&self, ready: bool, version: Option<&str>) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP health_predict_http_requests_total HTTP requests by route and status.\n",
        );
        out.push_str("# TYPE health_predict_http_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "health_predict_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP health_predict_http_request_duration_seconds Request latency by route.\n",
        );
        out.push_str("# TYPE health_predict_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            h.render(
                &mut out,
                "health_predict_http_request_duration_seconds",
                &format!("route=\"{route}\""),
                &LATENCY_BUCKETS,
            );
        }
        out.push_str("# HELP health_predict_prediction_score Predicted readmission probability.\n");
        out.push_str("# TYPE health_predict_prediction_score histogram\n");
        m.scores.render(
            &mut out,
            "health_predict_prediction_score",
            "",
            &SCORE_BUCKETS,
        );
        out.push_str("# HELP health_predict_predictions_total Predictions by class.\n");
        out.push_str("# TYPE health_predict_predictions_total counter\n");
        for (class, n) in m.predictions.iter().enumerate() {
            let _ = writeln!(
                out,
                "health_predict_predictions_total{{prediction=\"{class}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP health_predict_model_ready Whether a verified, warmed model is serving.\n",
        );
        out.push_str("# TYPE health_predict_model_ready gauge\n");
        let _ = writeln!(out, "health_predict_model_ready {}", u8::from(ready));
        out.push_str("# HELP health_predict_build_info Build and model version.\n");
        out.push_str("# TYPE health_predict_build_info gauge\n");
        let version = version.unwrap_or("").replace(['"', '\\', '\n'], "_");
        let _ = writeln!(
            out,
            "health_predict_build_info{{version=\"{}\",model_version=\"{version}\"}} 1",
            crate::VERSION
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/predict", 200, Duration::from_micros(300));
        m.request("/predict", 200, Duration::from_millis(3));
        m.request("/predict", 422, Duration::from_micros(50));
        m.predictions([(0.15, false), (0.85, true)]);
        let text = m.render(true, Some("m1"));
        assert!(
            text.contains(
                "health_predict_http_requests_total{route=\"/predict\",status=\"200\"} 2"
            )
        );
        assert!(
            text.contains(
                "health_predict_http_requests_total{route=\"/predict\",status=\"422\"} 1"
            )
        );
        assert!(text.contains("health_predict_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.0005\"} 2"));
        assert!(text.contains(
            "health_predict_http_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("health_predict_prediction_score_bucket{le=\"0.2\"} 1"));
        assert!(text.contains("health_predict_prediction_score_count 2"));
        assert!(text.contains("health_predict_predictions_total{prediction=\"1\"} 1"));
        assert!(text.contains("health_predict_model_ready 1"));
    }
}
