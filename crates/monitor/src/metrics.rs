//! `jetcc-monitor serve`: the live view as Prometheus metrics on `GET /metrics`.
//!
//! A `prometheus-client` collector encodes straight from the [`Live`] view at scrape time, so
//! the numbers on `/metrics` and in `watch` are the same numbers. Gauges describe the farm
//! now (`jetcc_workers`, `jetcc_jobs_pending`, bucket sizes); `_total` counters count events
//! since the monitor started and never go down, but for each worker's own job counts, which
//! restart from zero with the worker (a counter reset, as Prometheus reads one). Per-worker
//! series are labelled with the worker's name (`[worker] name`, else its host), which a
//! restart keeps, not its per-process id.

use std::net::SocketAddr;
use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::live::{Live, Shared};
use crate::status::Report;
use crate::tally::{Histogram, Tally};

/// Serves `/metrics` on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr, live: Shared) -> std::io::Result<()> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exporter(live)));
    let registry = std::sync::Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move { scrape(&registry) }
            }),
        )
        .route(
            "/",
            axum::routing::get(|| async { "jetcc-monitor: see /metrics\n" }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(
        "serving Prometheus metrics on http://{}/metrics",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}

fn scrape(registry: &Registry) -> axum::response::Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                // What prometheus-client writes (`# EOF`, `_total` samples of counters).
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Debug)]
struct Exporter(Shared);

impl prometheus_client::collector::Collector for Exporter {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = self.0.lock().expect("the view's lock");
        farm_gauges(&mut enc, &live)?;
        event_counters(&mut enc, &live)
    }
}

/// One metric without labels.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(m),
        _ => ConstGauge::new(value as i64).encode(m),
    }
}

/// One metric with one label, a series per `(label value, value)`.
fn labelled<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    series: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (value_of_label, value) in series {
        let labels = [(label, value_of_label)];
        let f = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(f)?,
            _ => ConstGauge::new(value as i64).encode(f)?,
        }
    }
    Ok(())
}

fn histogram<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: Option<&str>,
    series: impl IntoIterator<Item = (&'a str, &'a Histogram)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (value_of_label, h) in series {
        let none: Option<&std::collections::HashMap<usize, _>> = None;
        let buckets = h.buckets();
        match label {
            Some(label) => {
                let labels = [(label, value_of_label)];
                m.encode_family(&labels)?
                    .encode_histogram::<[(&str, &str); 0]>(h.sum_secs, h.count, &buckets, none)?;
            }
            None => m.encode_histogram::<[(&str, &str); 0]>(h.sum_secs, h.count, &buckets, none)?,
        }
    }
    Ok(())
}

/// The farm now, from the last read of its state: nothing but `jetcc_farm_up` before the
/// first one, so a scraper never takes "not read yet" for an empty farm.
fn farm_gauges(enc: &mut DescriptorEncoder, live: &Live) -> Result<(), std::fmt::Error> {
    let fresh = live.error.is_none() && live.status.is_some();
    single(
        enc,
        "jetcc_farm_up",
        "1 if the last read of the farm's state succeeded",
        MetricType::Gauge,
        fresh as u64,
    )?;
    let Some(status) = &live.status else {
        return Ok(());
    };
    let r = Report::new(&live.server, status);
    total_gauges(enc, &r)?;
    worker_gauges(enc, &r)?;
    bucket_gauges(enc, &r)?;
    if let Some(at) = live.read_at {
        let age = Instant::now().duration_since(at).as_secs();
        single(
            enc,
            "jetcc_farm_state_age_seconds",
            "Age of the farm state these gauges show",
            MetricType::Gauge,
            age,
        )?;
    }
    Ok(())
}

/// The farm's totals and its queue.
fn total_gauges(enc: &mut DescriptorEncoder, r: &Report) -> Result<(), std::fmt::Error> {
    let g = MetricType::Gauge;
    single(
        enc,
        "jetcc_workers",
        "Live workers (fresh heartbeats)",
        g,
        r.totals.workers as u64,
    )?;
    single(
        enc,
        "jetcc_worker_cores",
        "Cores of the live workers' machines",
        g,
        r.totals.cores,
    )?;
    single(
        enc,
        "jetcc_worker_slots",
        "Concurrent jobs the live workers take",
        g,
        r.totals.slots,
    )?;
    single(
        enc,
        "jetcc_worker_free_slots",
        "Slots free now",
        g,
        r.totals.free_slots,
    )?;
    single(
        enc,
        "jetcc_jobs_pending",
        "Jobs waiting for a worker",
        g,
        r.queue.pending,
    )?;
    single(
        enc,
        "jetcc_jobs_in_flight",
        "Jobs a worker holds",
        g,
        r.queue.in_flight,
    )?;
    single(
        enc,
        "jetcc_jobs_redelivered",
        "Jobs in flight that another worker had taken before",
        g,
        r.queue.redelivered,
    )
}

/// One series per worker name; live workers sharing a name are added up (one series per
/// label value, as the format wants).
fn worker_gauges(enc: &mut DescriptorEncoder, r: &Report) -> Result<(), std::fmt::Error> {
    let by_name = |f: fn(&crate::status::WorkerRow) -> u64| {
        let mut sums = std::collections::BTreeMap::<&str, u64>::new();
        for w in &r.workers {
            *sums.entry(w.name.as_str()).or_default() += f(w);
        }
        sums
    };
    labelled(
        enc,
        "jetcc_worker_jobs_done",
        "Jobs each worker finished since it started (its heartbeat)",
        MetricType::Counter,
        "worker",
        by_name(|w| w.jobs_done),
    )?;
    labelled(
        enc,
        "jetcc_worker_jobs_failed",
        "Jobs each worker failed since it started (its heartbeat)",
        MetricType::Counter,
        "worker",
        by_name(|w| w.jobs_failed),
    )?;
    labelled(
        enc,
        "jetcc_worker_busy_slots",
        "Slots each worker has busy",
        MetricType::Gauge,
        "worker",
        by_name(|w| u64::from(w.busy_slots())),
    )
}

/// One series per bucket (and the jobs stream).
fn bucket_gauges(enc: &mut DescriptorEncoder, r: &Report) -> Result<(), std::fmt::Error> {
    let g = MetricType::Gauge;
    let buckets = |f: fn(&crate::status::BucketRow) -> u64| {
        r.buckets.iter().map(move |b| (b.name.as_str(), f(b)))
    };
    labelled(
        enc,
        "jetcc_bucket_bytes",
        "Bytes in the jobs stream and the cache buckets",
        g,
        "bucket",
        buckets(|b| b.bytes),
    )?;
    labelled(
        enc,
        "jetcc_bucket_messages",
        "Messages in the jobs stream and the cache buckets",
        g,
        "bucket",
        buckets(|b| b.messages),
    )?;
    labelled(
        enc,
        "jetcc_bucket_max_bytes",
        "Size limit of each bucket",
        g,
        "bucket",
        r.buckets
            .iter()
            .filter_map(|b| Some((b.name.as_str(), b.max_bytes?))),
    )
}

/// What the events since the monitor started add up to: counters, then duration histograms.
fn event_counters(enc: &mut DescriptorEncoder, live: &Live) -> Result<(), std::fmt::Error> {
    let t = &live.tally;
    let c = MetricType::Counter;
    let map = |m: &'_ std::collections::BTreeMap<&'static str, u64>| {
        m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
    };
    labelled(
        enc,
        "jetcc_units",
        "Wrapped rustc invocations reported, by outcome",
        c,
        "outcome",
        map(&t.units),
    )?;
    let mut actions = enc.encode_descriptor(
        "jetcc_actions",
        "Build-script runs and C/C++ compiles reported, by kind and outcome",
        None,
        c,
    )?;
    for ((kind, outcome), n) in &t.actions {
        let labels = [("kind", *kind), ("outcome", *outcome)];
        ConstCounter::new(*n).encode(actions.encode_family(&labels)?)?;
    }
    tier_counters(enc, t)?;
    labelled(
        enc,
        "jetcc_compiles",
        "Misses compiled, by where",
        c,
        "where",
        map(&t.compiles),
    )?;
    labelled(
        enc,
        "jetcc_farm_fallbacks",
        "Compiles that could have gone to the farm and stayed local, by reason",
        c,
        "reason",
        t.fallbacks.iter().map(|(k, v)| (k.as_str(), *v)),
    )?;
    labelled(
        enc,
        "jetcc_jobs_finished",
        "Jobs workers finished, by result",
        c,
        "result",
        map(&t.jobs),
    )?;
    single(
        enc,
        "jetcc_events_malformed",
        "Events that did not decode",
        c,
        t.malformed,
    )?;
    duration_histograms(enc, t)
}

/// What each cache tier saw, summed over events.
fn tier_counters(enc: &mut DescriptorEncoder, t: &Tally) -> Result<(), std::fmt::Error> {
    let c = MetricType::Counter;
    let tiers = |f: fn(&jetcc_common::protocol::events::TierCounts) -> u64| {
        t.tiers.iter().map(move |(n, v)| (n.as_str(), f(v)))
    };
    labelled(
        enc,
        "jetcc_cache_hits",
        "Lookups that found a result, by tier",
        c,
        "tier",
        tiers(|v| v.hits),
    )?;
    labelled(
        enc,
        "jetcc_cache_misses",
        "Lookups that found none, by tier",
        c,
        "tier",
        tiers(|v| v.misses),
    )?;
    labelled(
        enc,
        "jetcc_cache_errors",
        "Failed lookups and writes, by tier (never counted as misses)",
        c,
        "tier",
        tiers(|v| v.errors),
    )?;
    labelled(
        enc,
        "jetcc_cache_writes",
        "Results written, by tier",
        c,
        "tier",
        tiers(|v| v.writes),
    )?;
    labelled(
        enc,
        "jetcc_cache_read_bytes",
        "Bytes of outputs read, by tier",
        c,
        "tier",
        tiers(|v| v.bytes_read),
    )?;
    labelled(
        enc,
        "jetcc_cache_written_bytes",
        "Bytes written, by tier",
        c,
        "tier",
        tiers(|v| v.bytes_written),
    )
}

/// Workers' time per job, and wrapped invocations' wall time.
fn duration_histograms(enc: &mut DescriptorEncoder, t: &Tally) -> Result<(), std::fmt::Error> {
    histogram(
        enc,
        "jetcc_job_duration_seconds",
        "Workers' time per job",
        None,
        [("", &t.job_seconds)],
    )?;
    histogram(
        enc,
        "jetcc_unit_duration_seconds",
        "Wall time of wrapped invocations, by outcome",
        Some("outcome"),
        t.unit_seconds.iter().map(|(k, h)| (*k, h)),
    )
}
