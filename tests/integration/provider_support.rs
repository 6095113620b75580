//! What the provider adapters' tests share: a connection of one test tenant to a fake, and a
//! manual sync of it through the worker.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use syncbridge::domain::{
    Connection, ConnectionSettings, Credentials, Job, JobReason, NewConnection, Provider, TenantId,
};
use syncbridge::sync::worker::{JobOutcome, run_job};
use syncbridge::sync::{Deadline, Deps};

/// Tenant `t1`'s connection to `provider` at `base_url` with `token` (and `refresh`, if any):
/// a 15-minute interval, default settings.
pub fn connection_to(provider: Provider, base_url: String, token: &str, refresh: Option<&str>) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider,
            base_url,
            credentials: Credentials {
                access_token: SecretString::from(token),
                refresh_token: refresh.map(SecretString::from),
                expires_at: None,
            },
            interval_minutes: 15,
            settings: ConnectionSettings::default(),
        },
        Utc::now(),
    )
}

/// A manual sync job of `conn`, as "sync now" enqueues it.
pub fn manual_job(conn: &Connection) -> Job {
    Job::sync(
        conn.tenant_id.clone(),
        conn.connection_id.clone(),
        Job::requested_id(&conn.connection_id, JobReason::Manual),
        JobReason::Manual,
        Utc::now(),
    )
}

/// Runs `job` through the worker (ten minutes at most); its outcome.
pub async fn run(deps: &Deps, job: &Job) -> JobOutcome {
    run_job(deps, job, Deadline::after(Duration::from_secs(600))).await.expect("job runs")
}

/// One manual sync of `conn` through the worker; its outcome.
pub async fn sync_once(deps: &Deps, conn: &Connection) -> JobOutcome {
    run(deps, &manual_job(conn)).await
}
