//! The Notion scenario: a CRM deals database of 5,000 deals behind Notion's rate limit (three
//! requests a second on average); a full pull (set-up), then 1% of the deals edited by a person,
//! then the measured incremental pull from the saved cursor.

use std::collections::BTreeSet;

use serde_json::json;
use syncbridge_fakes::notion::{FakeConfig, NotionFake};

use crate::child::WorkerSpec;
use crate::report::Figures;
use crate::scenarios::worker;

pub const INCREMENTAL: &str = "notion incremental 1% of 5k";

pub async fn incremental(name: &str, deals: usize) -> anyhow::Result<Figures> {
    let fake = NotionFake::start(FakeConfig { crm: true, deals, rate_limits: true, ..FakeConfig::default() })
        .await?;
    let state = fake.state();
    let crm = state.crm().ok_or_else(|| anyhow::anyhow!("the fake seeded no CRM"))?;
    // The seed is older than the first sync, as a real CRM's deals are.
    state.advance_clock(chrono::Duration::minutes(10));
    let token = FakeConfig::default().token.ok_or_else(|| anyhow::anyhow!("the fake has a token"))?;
    let settings = json!({ "notion": { "deals_database_id": crm.deals_database } }).to_string();
    let full = WorkerSpec { settings: Some(settings), ..WorkerSpec::full("notion", fake.base_url(), token) };
    let setup = worker(full.clone()).await?;
    let pulled = setup.written.iter().filter(|l| l.starts_with("deals ")).count();
    anyhow::ensure!(pulled == deals, "the set-up pull wrote {pulled} of {deals} deals");

    // A person edits 1% of the deals two minutes later. (Trashed deals would be deletes of records
    // the benchmark's discarding store never kept, which its shared check counts as lost; the
    // trash is covered by the adapter's integration tests.)
    state.advance_clock(chrono::Duration::minutes(2));
    let ids = state.page_ids(&crm.deals_data_source);
    let mut edited = BTreeSet::new();
    for (i, id) in ids.iter().step_by(100).enumerate() {
        state.edit_page(id, json!({ "Value": { "number": 42 + i } }))?;
        edited.insert(format!("deals {id}"));
    }
    let changed = edited.len();
    state.reset_stats();
    let cursors = serde_json::to_string(&setup.report.cursors)?;
    let run = worker(WorkerSpec { cursors: Some(cursors), ..full }).await?;
    let stats = state.stats();
    let mut f = Figures::new(name, "notion", "incremental", &run, stats.total, stats.rate_limited);
    f.requests_by_route = stats.routes.clone();
    let seen: BTreeSet<String> = run.written.iter().filter(|l| l.starts_with("deals ")).cloned().collect();
    // Trashed deals are deletes of records the benchmark's discarding store never kept: pulled,
    // not written.
    f.check(
        format!("the worker wrote exactly the {} edited deals (of {deals})", edited.len()),
        seen == edited,
    );
    // The database's data source (resolved again: the bench worker keeps no provider setup), one
    // query of live pages, one of the trash.
    f.target(format!("the {changed} changes in at most 3 requests"), stats.total <= 3);
    f.target("no 429 received", stats.rate_limited == 0);
    Ok(f)
}
