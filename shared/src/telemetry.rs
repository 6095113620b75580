//! Tracing setup shared by every function: JSON logs in Lambda (one line per event, carrying the
//! fields of the spans it happened in: the job's tenant, connection, job id, provider and reason,
//! the object type, the provider request), readable ones locally. In Lambda, also the EMF
//! metrics recorder ([`metrics`]).

pub mod metrics;

/// Whether this process runs in Lambda (Lambda sets `AWS_LAMBDA_FUNCTION_NAME`).
pub(crate) fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// Installs the global subscriber once. `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if in_lambda() {
        builder.json().without_time().with_current_span(false).with_span_list(true).try_init()
    } else {
        builder.try_init()
    };
}

/// What a Lambda main does first: [`init`], then, in Lambda, the EMF metrics recorder with
/// `function` as the `Function` dimension and `METRICS_NAMESPACE` (default `Syncbridge`) as the
/// namespace. A recorder that cannot be installed is logged; the function runs without metrics.
pub fn init_function(function: &'static str) {
    init();
    if !in_lambda() {
        return;
    }
    let namespace = std::env::var(metrics::NAMESPACE_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| metrics::DEFAULT_NAMESPACE.to_owned());
    if let Err(e) = metrics::install(&namespace, function) {
        tracing::warn!(error = %e, "running without metrics");
    }
}
