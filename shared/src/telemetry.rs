//! Tracing setup shared by every function: JSON logs in Lambda (one line per event, carrying the
//! fields of the spans it happened in: the job's tenant, connection, job id, provider and reason,
//! the object type, the provider request), readable ones locally.

/// Installs the global subscriber once. `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if in_lambda {
        builder.json().without_time().with_current_span(false).with_span_list(true).try_init()
    } else {
        builder.try_init()
    };
}
