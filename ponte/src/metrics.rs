//! `/metrics`: the process's Prometheus recorder (installed once, whatever number of
//! clouds a test process starts) and the scrape handler.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ponte_core::metrics as m;
use ponte_relay::Relay;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder; installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(m::REQUEST_DURATION.into()),
                m::DURATION_BUCKETS,
            )
            .expect("the duration buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if something else installed a recorder first; then our handle
        // renders what it has (the gauges below) and the rest goes to that recorder.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be partial");
        }
        m::describe();
        ponte_listen::describe();
        handle
    })
}

/// Histograms keep samples until drained: drain them every few seconds even when
/// nobody scrapes, so memory stays flat.
pub async fn upkeep(handle: &'static PrometheusHandle, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The Prometheus text exposition, with the live gauges read from `relay`.
pub fn render(relay: &Relay) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    metrics::gauge!(m::CONNECTORS_ONLINE).set(relay.online_count() as f64);
    metrics::gauge!(m::STREAMS_IN_FLIGHT).set(relay.streams_in_flight() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
}
