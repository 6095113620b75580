//! The benchmark scenarios: each starts its fake, runs the worker process and holds the figures to
//! the targets, after checking that the worker saw exactly the records it should have.

use std::collections::BTreeSet;

use anyhow::Context;
use syncbridge_fakes::hubspot::{FakeConfig, HubspotFake, TEN_SECONDLY_INTERVAL, TEN_SECONDLY_MAX};

use crate::child::{WorkerRun, WorkerSpec, run_worker};
use crate::report::{Figures, distinct};

/// HubSpot's list page size as the adapter requests it.
const HUBSPOT_LIST_PAGE: usize = 100;
/// Peak RSS allowed to the worker at 100,000 records.
const RSS_BUDGET_MIB: f64 = 64.0;

/// Every scenario, in the order `make bench` runs them.
pub const ALL: &[&str] = &["hubspot full 20k", "hubspot full 100k", "hubspot incremental 1% of 20k"];

/// Scenarios of the issue this build cannot run, and why.
pub const SKIPPED: &[&str] = &[
    "salesforce full 100k: the Salesforce adapter and fake are not on main yet",
    "google incremental: the Google Calendar adapter and fake are not on main yet",
];

/// Runs the scenario called `name`.
pub async fn run(name: &str) -> anyhow::Result<Figures> {
    match name {
        "hubspot full 20k" => hubspot_full(name, 20_000).await,
        "hubspot full 100k" => hubspot_full(name, 100_000).await,
        "hubspot incremental 1% of 20k" => hubspot_incremental(name, 20_000, 200).await,
        other => anyhow::bail!("no scenario called {other:?}"),
    }
}

/// Runs a worker process to its end without blocking the runtime that serves the fake.
async fn worker(spec: WorkerSpec) -> anyhow::Result<WorkerRun> {
    tokio::task::spawn_blocking(move || run_worker(&spec)).await.context("the worker thread panicked")?
}

/// `object id` lines as the worker writes them.
fn contact_lines(ids: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
    ids.into_iter().map(|i| format!("contacts {i}")).collect()
}

/// The fastest HubSpot allows `requests` requests, as the issue counts it: 19 a second (190 per
/// rolling 10 s). A rolling window that starts empty admits a first burst of 190, so a pull can
/// come in slightly under this.
fn hubspot_floor_s(requests: usize) -> f64 {
    requests as f64 * TEN_SECONDLY_INTERVAL.as_secs_f64() / f64::from(TEN_SECONDLY_MAX)
}

/// The least time HubSpot's rolling window (190 per 10 s), starting empty, needs for `requests`:
/// the first 190 at once, each later one 10 s after the one 190 before it.
fn hubspot_window_min_s(requests: usize) -> f64 {
    let max = TEN_SECONDLY_MAX as usize;
    (requests.saturating_sub(1) / max) as f64 * TEN_SECONDLY_INTERVAL.as_secs_f64()
}

/// A full pull of `contacts` contacts with HubSpot's rate limits on.
async fn hubspot_full(name: &str, contacts: usize) -> anyhow::Result<Figures> {
    let fake =
        HubspotFake::start(FakeConfig { contacts, rate_limits: true, ..FakeConfig::default() }).await?;
    let token = fake.state().config().private_app_token.clone().context("the fake has a token")?;
    let run =
        worker(WorkerSpec { provider: "hubspot", base_url: fake.base_url(), token, cursors: None }).await?;
    let stats = fake.state().stats();
    let mut f = Figures::new(name, "hubspot", "full", &run, stats.total, stats.rate_limited);

    let seen: BTreeSet<String> = run.written.iter().cloned().collect();
    f.check(
        format!("the worker wrote each of the {contacts} contacts exactly once, and nothing else"),
        run.written.len() == contacts && seen == contact_lines(1..=contacts),
    );
    let floor = hubspot_floor_s(contacts.div_ceil(HUBSPOT_LIST_PAGE));
    let window_min = hubspot_window_min_s(stats.total as usize);
    f.floor_s = Some(floor);
    f.window_min_s = Some(window_min);
    f.target(
        format!(
            "within 10% of the floor: wall <= {:.2} s (a rolling window that starts empty admits these \
             {} requests in {window_min:.2} s at best)",
            floor * 1.1,
            stats.total
        ),
        f.wall_s <= floor * 1.1,
    );
    f.target("no 429 received", stats.rate_limited == 0);
    if contacts >= 100_000 {
        f.target(format!("peak RSS < {RSS_BUDGET_MIB} MiB"), f.peak_rss_mib < RSS_BUDGET_MIB);
    }
    Ok(f)
}

/// A full pull of `contacts` (rate limits off: set-up, not measured), then `changed` contacts
/// edited as a user would, then the measured incremental pull from the saved cursor with the rate
/// limits on.
async fn hubspot_incremental(name: &str, contacts: usize, changed: usize) -> anyhow::Result<Figures> {
    let fake = HubspotFake::start(FakeConfig { contacts, ..FakeConfig::default() }).await?;
    let hub = fake.state();
    let token = hub.config().private_app_token.clone().context("the fake has a token")?;
    let full = WorkerSpec { provider: "hubspot", base_url: fake.base_url(), token, cursors: None };
    let setup = worker(full.clone()).await?;
    anyhow::ensure!(distinct(&setup.written) == contacts, "the set-up pull missed contacts");

    let step = contacts / changed;
    let edited: Vec<usize> = (1..=changed).map(|i| i * step).collect();
    for id in &edited {
        let title = format!("Benchmark edit {id}");
        hub.edit_contact(&id.to_string(), &[("jobtitle", &title)]).context("editing a contact")?;
    }
    hub.set_rate_limits(true);
    hub.reset_stats();
    let cursors = serde_json::to_string(&setup.report.cursors)?;
    let run = worker(WorkerSpec { cursors: Some(cursors), ..full }).await?;
    let stats = hub.stats();
    let mut f = Figures::new(name, "hubspot", "incremental", &run, stats.total, stats.rate_limited);

    let seen: BTreeSet<String> = run.written.iter().cloned().collect();
    f.check(
        format!("the worker saw exactly the {changed} edited contacts"),
        seen == contact_lines(edited.iter().copied()),
    );
    f.target(format!("the {changed} changes in at most 3 requests"), stats.total <= 3);
    f.target("no 429 received", stats.rate_limited == 0);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hubspot_floor_is_nineteen_requests_a_second() {
        assert!((hubspot_floor_s(200) - 10.526).abs() < 0.001);
        assert!((hubspot_floor_s(1_000) - 52.632).abs() < 0.001);
        assert_eq!(hubspot_window_min_s(190), 0.0);
        assert_eq!(hubspot_window_min_s(201), 10.0);
        assert_eq!(hubspot_window_min_s(1_001), 50.0);
    }

    #[test]
    fn worker_lines_name_the_object_and_the_id() {
        assert_eq!(contact_lines([3, 1]).into_iter().collect::<Vec<_>>(), ["contacts 1", "contacts 3"]);
    }
}
