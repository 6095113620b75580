//! The Fireflies scenario: an account of 1,000 meetings (one every two hours) behind the Business
//! plan's 60 requests a minute; a full pull (set-up), then 1% new meetings processed, then the
//! measured incremental pull from the saved cursor (its window starts two days before the newest
//! meeting seen, so it re-reads the last two days too).

use std::collections::BTreeSet;

use syncbridge_fakes::fireflies::{DEFAULT_API_KEY, FakeConfig, FirefliesFake, NewTranscript};

use crate::child::WorkerSpec;
use crate::report::Figures;
use crate::scenarios::worker;

pub const INCREMENTAL: &str = "fireflies incremental 1% of 1k";

pub async fn incremental(name: &str, meetings: usize) -> anyhow::Result<Figures> {
    let fake = FirefliesFake::start(FakeConfig {
        transcripts: meetings,
        rate_limits: true,
        ..FakeConfig::default()
    })
    .await?;
    let state = fake.state();
    let full = WorkerSpec::full("fireflies", fake.base_url(), DEFAULT_API_KEY.to_owned());
    let setup = worker(full.clone()).await?;
    let pulled = setup.written.iter().filter(|l| l.starts_with("transcripts ")).count();
    anyhow::ensure!(pulled == meetings, "the set-up pull wrote {pulled} of {meetings} transcripts");

    // 1% new meetings of the last hour, processed since.
    let changed = (meetings / 100).max(1);
    let mut added = BTreeSet::new();
    for i in 0..changed {
        let id = state.add(NewTranscript {
            title: format!("New meeting {i}"),
            date: state.now() - chrono::Duration::minutes(5 * i as i64 + 5),
            duration: 25.0,
            ..NewTranscript::default()
        });
        added.insert(format!("transcripts {id}"));
    }
    state.reset_stats();
    let cursors = serde_json::to_string(&setup.report.cursors)?;
    let run = worker(WorkerSpec { cursors: Some(cursors), ..full }).await?;
    let stats = state.stats();
    let mut f = Figures::new(name, "fireflies", "incremental", &run, stats.total, stats.rate_limited);
    f.requests_by_route = stats.fields.clone();
    let seen: BTreeSet<String> =
        run.written.iter().filter(|l| l.starts_with("transcripts ")).cloned().collect();
    // The two-day lookback re-reads the meetings of the last 48 hours (24 of the seed): the
    // benchmark's discarding store keeps nothing, so they are written again here, where a real
    // store finds them unchanged.
    let reread = seen.difference(&added).count();
    f.check(
        format!("the worker saw all {changed} new transcripts (and re-read {reread} of the lookback, of {meetings})"),
        added.is_subset(&seen) && reread <= 25,
    );
    f.target(format!("the {changed} new transcripts in 1 request"), stats.total <= 1);
    f.target("no 429 received", stats.rate_limited == 0);
    Ok(f)
}
