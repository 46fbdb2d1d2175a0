//! What every admit service runs on: layered configuration, logging, Prometheus
//! metrics, health and readiness, and a graceful shutdown in which readiness fails
//! before the server stops accepting.

pub mod audit;
pub mod client;
pub mod database;
pub mod health;
pub mod http;
pub mod i18n;
pub mod limits;
pub mod logging;
pub mod memory;
pub mod methods;
pub mod metrics;
pub mod priority;
pub mod revocations;
pub mod selfcheck;
pub mod settings;
pub mod web;

pub use health::Readiness;
pub use metrics::Metrics;
pub use settings::Settings;
