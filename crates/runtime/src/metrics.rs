//! Prometheus metrics: one registry per application (no global state), a middleware
//! that counts and times every request by route pattern, and the `/metrics` page.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::time::Instant;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["method", "route"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("fresh registry");
        registry
            .register(Box::new(latency.clone()))
            .expect("fresh registry");
        Self {
            registry,
            requests,
            latency,
        }
    }

    /// Registers a service's own collector.
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: &C) {
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            tracing::warn!(error = %e, "metric registered twice");
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts, times and logs every request. Mounted inside the request span
/// of tracing-actix-web, with `web::Data<Metrics>` in the app.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let res = next.call(req).await?;
    let status_code = res.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    // One access line a request, inside the request span (so it carries the request
    // id). Probes are frequent and uninteresting: debug level.
    if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(method = %method, route = %route, status = status_code, latency_ms, "request handled");
    } else {
        tracing::info!(method = %method, route = %route, status = status_code, latency_ms, "request handled");
    }
    if let Some(m) = metrics {
        let status = status_code.to_string();
        m.requests
            .with_label_values(&[&method, &route, &status])
            .inc();
        m.latency
            .with_label_values(&[&method, &route])
            .observe(start.elapsed().as_secs_f64());
    }
    Ok(res)
}

pub async fn handler(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}
