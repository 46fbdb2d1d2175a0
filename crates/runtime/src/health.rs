//! `/healthz` (the process answers) and `/readyz` (its dependencies answer, and it is
//! not shutting down).

use actix_web::{web, HttpResponse};
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, CheckFn)>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dependency check (`database`, `redis`).
    pub fn check<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.to_owned(), Arc::new(move || Box::pin(f()))));
        self
    }

    /// From now on `/readyz` fails, so the load balancer stops sending traffic.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub async fn report(&self) -> (bool, serde_json::Value) {
        let mut ok = !self.is_draining();
        let mut out = serde_json::Map::new();
        for (name, f) in &self.checks {
            let r = tokio::time::timeout(Duration::from_secs(2), f()).await;
            let v = match r {
                Ok(Ok(())) => serde_json::Value::from("ok"),
                Ok(Err(e)) => {
                    ok = false;
                    serde_json::Value::from(e)
                }
                Err(_) => {
                    ok = false;
                    serde_json::Value::from("timed out")
                }
            };
            out.insert(name.clone(), v);
        }
        let status = if self.is_draining() {
            "draining"
        } else if ok {
            "ok"
        } else {
            "unavailable"
        };
        (ok, serde_json::json!({"status": status, "checks": out}))
    }
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let (ok, body) = readiness.report().await;
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Mounts `/healthz`, `/readyz` and `/metrics`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(crate::metrics::handler));
}
