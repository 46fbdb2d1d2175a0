//! HTTP plumbing shared by the services: reading a body under a size limit, and
//! running a server until SIGTERM with readiness failing first.

use crate::health::Readiness;
use actix_web::dev::ServerHandle;
use actix_web::web;
use bytes::BytesMut;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
pub async fn read_body(payload: web::Payload, limit: usize) -> Result<BytesMut, BodyError> {
    read_body_sized(payload, limit, 0).await
}

/// [`read_body`] into a buffer of `expected` bytes (the request's `Content-Length`,
/// at most `limit`) from the start: a body of megabytes is not copied into buffers
/// that double as it grows, which would take twice its size at the end.
pub async fn read_body_sized(
    mut payload: web::Payload,
    limit: usize,
    expected: usize,
) -> Result<BytesMut, BodyError> {
    let mut body = BytesMut::with_capacity(expected.min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The service's SIGTERM listener, registered when this is called: from then on a
/// SIGTERM is the service's to handle (no longer the default action, which ends the
/// process at once), so register it before any background work starts.
pub struct TermSignal {
    #[cfg(unix)]
    inner: Option<tokio::signal::unix::Signal>,
}

impl TermSignal {
    pub fn register() -> Self {
        Self {
            #[cfg(unix)]
            inner: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn recv(self) {
        #[cfg(unix)]
        if let Some(mut s) = self.inner {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Waits for SIGTERM (`term`) or Ctrl-C (or `stop`), then: readiness fails, `grace`
/// passes so load balancers notice, background workers are told to stop, and the
/// server drains in-flight requests.
pub async fn shutdown_on_signal(
    server: ServerHandle,
    readiness: Readiness,
    grace: Duration,
    workers: CancellationToken,
    term: TermSignal,
) {
    let term = term.recv();
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = workers.cancelled() => {}
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: readiness fails, then in-flight requests drain"
    );
    readiness.start_draining();
    tokio::time::sleep(grace).await;
    workers.cancel();
    server.stop(true).await;
}

/// A service's HTTP server, bound and running.
pub struct Started {
    pub server: actix_web::dev::Server,
    pub addr: std::net::SocketAddr,
}

/// Builds, binds and starts a server with what every service has: request ids and
/// request logs, metrics, `/healthz` `/readyz` `/metrics`, a JSON 404, and the
/// graceful shutdown of [`shutdown_on_signal`]. `configure` mounts the service's own
/// routes and data. Prints `NAME listening on http://ADDR` on stdout (a listener bound
/// to port 0 has a free port; test harnesses read the line).
pub fn start<F>(
    name: &str,
    listener: std::net::TcpListener,
    readiness: Readiness,
    metrics: crate::Metrics,
    stop: CancellationToken,
    grace: Duration,
    configure: F,
) -> std::io::Result<Started>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    use actix_web::middleware::from_fn;
    let readiness_data = web::Data::new(readiness.clone());
    let metrics_data = web::Data::new(metrics);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(from_fn(retry_after))
            .wrap(from_fn(crate::metrics::track))
            .wrap(tracing_actix_web::TracingLogger::<RequestSpan>::new())
            .app_data(readiness_data.clone())
            .app_data(metrics_data.clone())
            .configure(crate::health::routes)
            .configure(configure.clone())
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(drain_timeout().as_secs().max(1))
    .listen(listener)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the server bound no address"))?;
    let server = server.run();
    println!("{name} listening on http://{addr}");
    let term = TermSignal::register();
    tokio::spawn(shutdown_on_signal(
        server.handle(),
        readiness,
        grace,
        stop,
        term,
    ));
    Ok(Started { server, addr })
}

/// Middleware: every 503 (a dependency is down, or the process is draining) tells
/// the client when to retry, whichever handler produced it.
pub async fn retry_after(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    if res.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        let headers = res.headers_mut();
        if !headers.contains_key(actix_web::http::header::RETRY_AFTER) {
            headers.insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("1"),
            );
        }
    }
    Ok(res)
}

/// How long readiness fails before the server stops accepting
/// (`ADMIT_SHUTDOWN_GRACE_MS`, else `default`; in production a few load-balancer
/// probe periods).
pub fn grace(default: Duration) -> Duration {
    std::env::var("ADMIT_SHUTDOWN_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(default)
}

/// How long the server waits, once it stopped accepting, for in-flight requests
/// (and keep-alive connections finishing their current response) before it closes
/// what is left: `ADMIT_SHUTDOWN_DRAIN_SECS`, else 30 s. The Kubernetes chart sets
/// it with the grace below, and its `terminationGracePeriodSeconds` covers both.
pub fn drain_timeout() -> Duration {
    std::env::var("ADMIT_SHUTDOWN_DRAIN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

/// The span of every request: tracing-actix-web's fields, but `http.target` is the
/// path without its query, which carries link tokens (`/password/set?token=…`,
/// `/password/reset?token=…`) that logs must never hold, and `http.client_ip` is the
/// client's address by the trusted proxies ([`crate::client`]).
pub struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        use tracing::field::Empty;
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let method = request.method().as_str().to_owned();
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let info = request.connection_info();
        // Not `realip_remote_addr`: it believes any client's `X-Forwarded-For`.
        let client_ip = crate::client::of(
            request.app_data::<web::Data<crate::client::TrustedProxies>>(),
            request.peer_addr(),
            request.headers(),
        )
        .map(|ip| ip.to_string())
        .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %method,
            http.route = %route,
            http.scheme = %info.scheme(),
            http.host = %info.host(),
            http.client_ip = %client_ip,
            http.user_agent = %user_agent,
            http.target = %request.path(),
            http.status_code = Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = Empty,
            request_id = %request_id,
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

async fn not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound().json(serde_json::json!({
        "error": "NotFoundException",
        "message": "no such resource",
    }))
}

/// Binds `host:port` (port 0: any free port).
pub fn bind(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind((host, port))
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant
/// time; an empty `token` admits nobody. The internal and admin endpoints of every
/// service.
pub fn bearer_matches(req: &actix_web::HttpRequest, token: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    !token.is_empty()
        && given.len() == token.len()
        && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// A JSON answer of the admin APIs: `status` (500 if it is not one), never cached.
pub fn json_answer(status: u16, body: serde_json::Value) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
    .json(body)
}
