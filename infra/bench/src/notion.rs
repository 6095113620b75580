//! The Notion scenarios, behind Notion's rate limit (three requests a second on average): a CRM
//! deals database, a full pull (set-up), then edits, then the measured incremental pull from the
//! saved cursor. Either 1% of 5,000 deals edited by a person, or a bulk edit of all 12,000 deals
//! of a database imported over two hours, in one minute (past Notion's 10,000-result query cap at
//! one stamp: that minute is listed by creation time).

use std::collections::BTreeSet;

use serde_json::json;
use syncbridge_fakes::notion::{FakeConfig, NotionFake, RunningFake};

use crate::child::WorkerSpec;
use crate::report::Figures;
use crate::scenarios::worker;

pub const INCREMENTAL: &str = "notion incremental 1% of 5k";
pub const BULK_EDIT: &str = "notion incremental, a bulk edit of 12,000 deals in one minute";

/// `deals` deals, 100 created a minute when `spread` (as an import through the API spreads
/// them), else all at once; the set-up full pull done. The fake, the deals' ids, the worker spec
/// and the cursors the set-up pull left.
async fn synced_crm(
    deals: usize,
    spread: bool,
) -> anyhow::Result<(RunningFake, Vec<String>, WorkerSpec, String)> {
    let seeded = if spread { 0 } else { deals };
    let fake = NotionFake::start(FakeConfig {
        crm: true,
        deals: seeded,
        rate_limits: true,
        ..FakeConfig::default()
    })
    .await?;
    let state = fake.state();
    let crm = state.crm().ok_or_else(|| anyhow::anyhow!("the fake seeded no CRM"))?;
    for i in 0..deals - seeded {
        if i % 100 == 0 {
            state.advance_clock(chrono::Duration::minutes(1));
        }
        let name = json!({ "Name": { "title": [{ "text": { "content": format!("Deal {i}") } }] } });
        state.create_page(&crm.deals_data_source, name)?;
    }
    // The seed is older than the first sync, as a real CRM's deals are.
    state.advance_clock(chrono::Duration::minutes(10));
    let token = FakeConfig::default().token.ok_or_else(|| anyhow::anyhow!("the fake has a token"))?;
    let settings = json!({ "notion": { "deals_database_id": crm.deals_database } }).to_string();
    let full = WorkerSpec { settings: Some(settings), ..WorkerSpec::full("notion", fake.base_url(), token) };
    let setup = worker(full.clone()).await?;
    // Distinct: a query capped at 10,000 is followed by one from its last stamp, which delivers
    // that minute's deals again.
    let pulled = setup.written.iter().filter(|l| l.starts_with("deals ")).collect::<BTreeSet<_>>().len();
    anyhow::ensure!(pulled == deals, "the set-up pull wrote {pulled} of {deals} deals");
    let cursors = serde_json::to_string(&setup.report.cursors)?;
    let ids = state.page_ids(&crm.deals_data_source);
    Ok((fake, ids, full, cursors))
}

/// Edits every `step`th deal two minutes after the set-up, then measures the incremental pull.
/// (Trashed deals would be deletes of records the benchmark's discarding store never kept, which
/// its shared check counts as lost; the trash is covered by the adapter's integration tests.)
pub async fn incremental(name: &str, deals: usize, step: usize, spread: bool) -> anyhow::Result<Figures> {
    let (fake, ids, full, cursors) = synced_crm(deals, spread).await?;
    let state = fake.state();
    state.advance_clock(chrono::Duration::minutes(2));
    let mut edited = BTreeSet::new();
    for (i, id) in ids.iter().step_by(step).enumerate() {
        state.edit_page(id, json!({ "Value": { "number": 42 + i } }))?;
        edited.insert(format!("deals {id}"));
    }
    let changed = edited.len();
    state.reset_stats();
    let run = worker(WorkerSpec { cursors: Some(cursors), ..full }).await?;
    let stats = state.stats();
    let mut f = Figures::new(name, "notion", "incremental", &run, stats.total, stats.rate_limited);
    f.requests_by_route = stats.routes.clone();
    let seen: BTreeSet<String> = run.written.iter().filter(|l| l.starts_with("deals ")).cloned().collect();
    f.check(format!("the worker wrote exactly the {changed} edited deals (of {deals})"), seen == edited);
    // The database's data source (resolved again: the bench worker keeps no provider setup), the
    // queries of live pages, one of the trash.
    let queries = if changed <= 10_000 {
        changed.div_ceil(100).max(1)
    } else {
        // The capped listing at one stamp (100 queries), that minute again by creation time to
        // the cap (100), the rest of it, and one query after the minute.
        200 + (changed - 10_000 + 100).div_ceil(100) + 1
    };
    let most = queries + 2;
    f.target(format!("the {changed} changes in at most {most} requests"), stats.total <= most as u64);
    f.target("no 429 received", stats.rate_limited == 0);
    Ok(f)
}
