//! Logging with `tracing`: JSON lines in production, readable lines for a person.
//! Every line written while a request is handled carries its `request_id` (the
//! request span of tracing-actix-web).

use crate::settings::{LogFormat, LogSettings};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Targets whose lines would carry secrets, capped at a level whatever `RUST_LOG` or
/// `log.level` say (SECURITY.md "Input": logs carry no secret):
/// - `lettre::transport::smtp` at `info`: at `debug` lettre logs the SMTP transcript,
///   every line written and read, so the data of every message (the set-password and
///   reset links, the confirmation codes) and the `AUTH` exchange (the SMTP password,
///   base64).
pub const CAPPED_TARGETS: &[(&str, &str)] = &[("lettre::transport::smtp", "info")];

/// The filter of `level` (an `EnvFilter` directive string), with [`CAPPED_TARGETS`].
pub fn filter(level: &str) -> EnvFilter {
    let base = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    capped(base)
}

fn capped(mut filter: EnvFilter) -> EnvFilter {
    for (target, level) in CAPPED_TARGETS {
        match format!("{target}={level}").parse() {
            Ok(directive) => filter = filter.add_directive(directive),
            Err(_) => unreachable!("the capped targets are valid directives"),
        }
    }
    filter
}

/// Installs the process's subscriber. Call once, from `main`.
pub fn init(settings: &LogSettings) {
    let filter = capped(
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&settings.level))
            .unwrap_or_else(|_| EnvFilter::new("info")),
    );
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_err() {
        // Already installed (a test harness, or an embedding program): keep theirs.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smtp_transcript_stays_out_whatever_the_level() {
        for level in [
            "trace",
            "lettre=trace",
            "lettre::transport::smtp=trace,debug",
        ] {
            let shown = filter(level).to_string();
            assert!(
                shown.contains("lettre::transport::smtp=info"),
                "{level}: {shown}"
            );
            assert!(
                !shown.contains("lettre::transport::smtp=trace"),
                "{level}: {shown}"
            );
        }
    }
}
