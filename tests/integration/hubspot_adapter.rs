//! The HubSpot adapter against the HubSpot fake over HTTP: full and incremental pulls, the search
//! API's 10,000-result cap, 429s, expired tokens and token refresh.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use syncbridge::adapters::hubspot::{HubspotFactory, Pacing};
use syncbridge::config::OAuthApp;
use syncbridge::domain::{
    Connection, Credentials, NewConnection, ObjectType, Provider, SyncCursor, TenantId,
};
use syncbridge::ports::{ProviderClient, ProviderError, ProviderFactory};
use syncbridge_fakes::hubspot::{FakeConfig, Fault, FaultKind, HubspotFake, Route, RunningFake};

const TOKEN: &str = "pat-na1-fake";

async fn start(contacts: usize, rate_limits: bool) -> RunningFake {
    HubspotFake::start(FakeConfig { contacts, rate_limits, ..FakeConfig::default() })
        .await
        .expect("fake starts")
}

fn connection(base_url: &str) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: base_url.to_owned(),
            credentials: Credentials {
                access_token: SecretString::from(TOKEN),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: Default::default(),
        },
        Utc::now(),
    )
}

fn client(fake: &RunningFake, pacing: Pacing) -> Box<dyn ProviderClient> {
    let app = OAuthApp {
        client_id: fake.state().config().client_id.clone(),
        client_secret: SecretString::from(fake.state().config().client_secret.clone()),
    };
    HubspotFactory::new(reqwest::Client::new(), Some(app))
        .with_pacing(pacing)
        .client(&connection(&fake.base_url()))
        .expect("client")
}

/// Pulls until `has_more` is false; returns every external id pulled (with repeats), the final
/// cursor and the number of pages. Fails instead of looping forever.
async fn pull_all(
    client: &dyn ProviderClient,
    token: &SecretString,
    mut cursor: Option<SyncCursor>,
) -> (Vec<String>, Option<SyncCursor>, usize) {
    let mut ids = Vec::new();
    for pages in 1..=1_000 {
        let page = client.pull_page(token, ObjectType::Contacts, cursor.as_ref()).await.expect("page pulls");
        ids.extend(page.records.iter().map(|r| r.external_id.as_str().to_owned()));
        cursor = Some(page.cursor);
        if !page.has_more {
            return (ids, cursor, pages);
        }
    }
    panic!("the pull did not finish within 1,000 pages");
}

fn fast_search() -> Pacing {
    Pacing { search_per_second: 1_000, ..Pacing::default() }
}

#[tokio::test]
async fn hubspot_full_pull_pages_through_every_contact_then_catches_up_by_search() {
    let fake = start(450, false).await;
    let client = client(&fake, Pacing::default());
    let token = SecretString::from(TOKEN);
    let (ids, cursor, pages) = pull_all(client.as_ref(), &token, None).await;
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), 450);
    assert_eq!(ids.len(), 450);
    assert_eq!(pages, 6);
    let stats = fake.state().stats();
    assert_eq!(stats.routes.get("list"), Some(&5));
    assert_eq!(stats.routes.get("search"), Some(&1));
    assert_eq!(client.stats().requests, 6);
    assert!(cursor.is_some_and(|c| c.as_str().contains("incremental")));
}

#[tokio::test]
async fn hubspot_incremental_pull_returns_exactly_the_edited_contacts_in_one_request() {
    let fake = start(300, false).await;
    let client = client(&fake, Pacing::default());
    let token = SecretString::from(TOKEN);
    let (_, cursor, _) = pull_all(client.as_ref(), &token, None).await;
    let state = fake.state();
    for id in ["17", "250", "3"] {
        assert!(state.edit_contact(id, &[("jobtitle", "Pilot")]).is_some());
    }
    state.reset_stats();
    let page =
        client.pull_page(&token, ObjectType::Contacts, cursor.as_ref()).await.expect("incremental page");
    let ids: Vec<&str> = page.records.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(ids, vec!["17", "250", "3"]);
    assert!(page.records.iter().all(|r| r.fields["job_title"] == "Pilot"));
    assert!(!page.has_more);
    assert_eq!(state.stats().total, 1);

    let again =
        client.pull_page(&token, ObjectType::Contacts, Some(&page.cursor)).await.expect("lookback page");
    assert!(again.records.len() <= 3, "only lookback repeats come back");
}

#[tokio::test]
async fn hubspot_pull_of_more_than_ten_thousand_changes_neither_skips_nor_loops() {
    let fake = start(10_500, false).await;
    let client = client(&fake, fast_search());
    let token = SecretString::from(TOKEN);
    let (_, cursor, _) = pull_all(client.as_ref(), &token, None).await;
    let state = fake.state();
    let all: BTreeSet<String> = state.contact_ids().into_iter().collect();

    assert_eq!(state.touch_contacts(all.iter().map(String::as_str), false), 10_500);
    state.reset_stats();
    let (ids, cursor, pages) = pull_all(client.as_ref(), &token, cursor).await;
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert!(pages < 120, "distinct timestamps took {pages} pages");
    assert_eq!(state.stats().rate_limited, 0);

    assert_eq!(state.touch_contacts(all.iter().map(String::as_str), true), 10_500);
    state.reset_stats();
    let (ids, _, pages) = pull_all(client.as_ref(), &token, cursor).await;
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert!(pages < 200, "one shared timestamp took {pages} pages");
    assert_eq!(state.stats().routes.get("search").copied(), Some(pages as u64));
}

#[tokio::test]
async fn hubspot_adapter_waits_out_a_429_and_retries() {
    let fake = start(20, false).await;
    fake.state().inject_fault(Fault {
        route: Route::List,
        kind: FaultKind::RateLimit { policy: Some("SECONDLY".into()), retry_after_secs: None },
        count: 1,
    });
    let client = client(&fake, Pacing::default());
    let page = client
        .pull_page(&SecretString::from(TOKEN), ObjectType::Contacts, None)
        .await
        .expect("page after retry");
    assert_eq!(page.records.len(), 20);
    assert_eq!(client.stats().requests, 2);
    assert_eq!(client.stats().rate_limited, 1);
    assert_eq!(fake.state().stats().rate_limited, 1);
}

#[tokio::test]
async fn hubspot_adapter_returns_rate_limited_when_the_wait_is_long() {
    let fake = start(5, false).await;
    fake.state().inject_fault(Fault {
        route: Route::Any,
        kind: FaultKind::RateLimit { policy: Some("DAILY".into()), retry_after_secs: None },
        count: 1,
    });
    let client = client(&fake, Pacing::default());
    let err = client
        .pull_page(&SecretString::from(TOKEN), ObjectType::Contacts, None)
        .await
        .expect_err("daily limit");
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after } if retry_after >= Duration::from_secs(60))
    );
}

#[tokio::test]
async fn hubspot_adapter_paces_searches_so_a_rate_limited_fake_sends_no_429() {
    let fake = start(1_500, true).await;
    let client = client(&fake, Pacing::default());
    let token = SecretString::from(TOKEN);
    let (_, cursor, _) = pull_all(client.as_ref(), &token, None).await;
    let state = fake.state();
    let ids = state.contact_ids();
    state.touch_contacts(ids.iter().map(String::as_str), false);
    let (pulled, _, pages) = pull_all(client.as_ref(), &token, cursor).await;
    assert!(pages >= 8);
    assert_eq!(pulled.iter().collect::<BTreeSet<_>>().len(), 1_500);
    assert_eq!(state.stats().rate_limited, 0);
    assert_eq!(client.stats().rate_limited, 0);
}

#[tokio::test]
async fn hubspot_expired_token_is_unauthorized_and_server_errors_are_transient() {
    let fake = start(5, false).await;
    let state = fake.state();
    let issued = state.issue_token(None);
    state.expire_token(&issued.access_token);
    let client = client(&fake, Pacing::default());
    let err = client
        .pull_page(&SecretString::from(issued.access_token), ObjectType::Contacts, None)
        .await
        .expect_err("expired");
    assert!(matches!(err, ProviderError::Unauthorized));

    // One 500 or one cut-off answer is retried in place: the pull goes on.
    for kind in [FaultKind::ServerError, FaultKind::MalformedJson] {
        state.inject_fault(Fault { route: Route::List, kind, count: 1 });
        let before = client.stats().requests;
        let page =
            client.pull_page(&SecretString::from(TOKEN), ObjectType::Contacts, None).await.expect("retried");
        assert_eq!(page.records.len(), 5);
        assert_eq!(client.stats().requests - before, 2, "one retry in place");
    }
    // A provider that keeps failing: transient (the job comes back later), never permanent.
    state.inject_fault(Fault { route: Route::List, kind: FaultKind::ServerError, count: 10 });
    let err =
        client.pull_page(&SecretString::from(TOKEN), ObjectType::Contacts, None).await.expect_err("500");
    assert!(matches!(err, ProviderError::Transient(_)) && err.is_retryable());
    state.clear_faults();
    state.inject_fault(Fault { route: Route::List, kind: FaultKind::MalformedJson, count: 10 });
    let err = client
        .pull_page(&SecretString::from(TOKEN), ObjectType::Contacts, None)
        .await
        .expect_err("malformed");
    assert!(matches!(err, ProviderError::Transient(_)), "a truncated body is retried: {err:?}");
    assert_eq!(err.provider_code(), Some("truncated_body"));
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn hubspot_refresh_exchanges_a_refresh_token_for_working_credentials() {
    let fake = start(5, false).await;
    let issued = fake.state().issue_token(None);
    let client = client(&fake, Pacing::default());
    let creds = client.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect("refresh");
    let expires_at = creds.expires_at.expect("expiry");
    assert!(expires_at > Utc::now() + chrono::Duration::minutes(29));
    assert_ne!(creds.access_token.expose_secret(), issued.access_token.as_str());
    let page =
        client.pull_page(&creds.access_token, ObjectType::Contacts, None).await.expect("new token works");
    assert_eq!(page.records.len(), 5);

    let bad = client.refresh(&SecretString::from("not-a-refresh-token")).await;
    assert!(matches!(bad, Err(ProviderError::Unauthorized)));

    let no_app = HubspotFactory::new(reqwest::Client::new(), None)
        .client(&connection(&fake.base_url()))
        .expect("client");
    let err = no_app.refresh(&SecretString::from(issued.refresh_token)).await;
    assert!(matches!(err, Err(ProviderError::Permanent(_))));
}

#[tokio::test]
async fn hubspot_incremental_pull_reads_twelve_thousand_contacts_sharing_one_timestamp_once_each_in_sixty_two_searches()
 {
    let fake = start(20_000, false).await;
    let client = client(&fake, fast_search());
    let token = SecretString::from(TOKEN);
    let (_, cursor, _) = pull_all(client.as_ref(), &token, None).await;
    let state = fake.state();
    let touched: BTreeSet<String> =
        state.contact_ids().into_iter().filter(|id| id.parse::<u64>().is_ok_and(|n| n % 5 < 3)).collect();
    assert_eq!(touched.len(), 12_000);
    assert_eq!(state.touch_contacts(touched.iter().map(String::as_str), true), 12_000);

    state.reset_stats();
    let (ids, _, pages) = pull_all(client.as_ref(), &token, cursor).await;
    assert_eq!(ids.len(), 12_000, "each changed contact read once");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), touched);
    let stats = state.stats();
    assert_eq!(
        (stats.routes.get("search").copied(), stats.total, pages),
        (Some(62), 62, 62),
        "a probe, 60 pages of 200 by id, the probe after the window: {:?}",
        stats.routes
    );
}

#[tokio::test]
async fn hubspot_a_client_asked_to_check_deletes_scans_the_archived_listing_at_once_and_once_per_type() {
    let fake = start(50, false).await;
    let token = SecretString::from(TOKEN);
    let (_, cursor, _) = pull_all(client(&fake, Pacing::default()).as_ref(), &token, None).await;
    let state = fake.state();
    assert!(state.archive_contact("4"));
    state.reset_stats();

    let (ids, cursor, _) = pull_all(client(&fake, Pacing::default()).as_ref(), &token, cursor).await;
    assert!(!ids.contains(&"4".to_owned()), "the 15-minute scan is not due");
    assert_eq!(state.stats().routes.get("list"), None);

    let asked = client(&fake, Pacing::default());
    asked.check_deletes_now();
    let (ids, cursor, _) = pull_all(asked.as_ref(), &token, cursor).await;
    assert_eq!(ids, vec!["4".to_owned()], "the archived contact comes back as a delete");
    assert_eq!(state.stats().routes.get("list"), Some(&1), "one archived page");
    let (ids, _, _) = pull_all(asked.as_ref(), &token, cursor).await;
    assert!(ids.is_empty());
    assert_eq!(state.stats().routes.get("list"), Some(&1), "the ask is spent for contacts");
}
