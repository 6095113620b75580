//! Documents linked to CRM records: each pulled Drive file gets `linked_deals` (the deals whose
//! name its name contains) and `linked_contacts` (the contacts whose email it is shared with),
//! as record ids of the tenant's CRM connections, by the connection's [`DocumentLinks`] rule.
//! Meeting follow-up tasks (from Fireflies transcripts) get `linked_contacts` the same way, from
//! the addresses of the people who attended ([`link_attendees`]).
//!
//! Kept cheap: the deals' names and the contacts' emails are read once per job, and only when a
//! page brought files (a sync that finds nothing reads nothing), from the tenant's HubSpot and
//! Salesforce connections, at most [`MAX_INDEXED`] records of each kind per connection. Matching
//! is in memory: a substring test per deal name and a map lookup per shared address. A link
//! appears when the file is pulled (created or changed); a deal created after its file was
//! pulled links at the file's next change.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::domain::{DocumentLinks, ObjectType, Provider, RecordId, RemoteRecord, TenantId};
use crate::ports::{ConnectionStore, RecordStore, StoreError};

/// Records of one kind read from one CRM connection for the index, at most.
pub const MAX_INDEXED: usize = 5_000;
/// Shorter deal names would link almost everything.
const MIN_DEAL_NAME: usize = 3;
const PAGE: usize = 100;

/// Deal names and contact emails of a tenant's CRM connections.
#[derive(Debug, Default)]
pub struct LinkIndex {
    deals: Vec<(String, RecordId)>,
    contacts: HashMap<String, Vec<RecordId>>,
}

impl LinkIndex {
    /// Reads what `rule` needs from every HubSpot and Salesforce connection of `tenant`.
    pub async fn load(
        connections: &dyn ConnectionStore,
        records: &dyn RecordStore,
        tenant: &TenantId,
        rule: DocumentLinks,
    ) -> Result<Self, StoreError> {
        let mut index = LinkIndex::default();
        for conn in connections.list(tenant).await? {
            if !matches!(conn.provider, Provider::Hubspot | Provider::Salesforce) {
                continue;
            }
            let wanted =
                [(ObjectType::Deals, rule.by_deal_name), (ObjectType::Contacts, rule.by_shared_contact)];
            for (object, on) in wanted {
                if !on {
                    continue;
                }
                let (mut token, mut read) = (None::<String>, 0);
                loop {
                    let page = records
                        .list(tenant, &conn.connection_id, Some(object), PAGE, token.as_deref())
                        .await?;
                    for r in page.items.iter().filter(|r| !r.deleted) {
                        let text = |k: &str| {
                            r.fields.get(k).and_then(Value::as_str).map(|s| s.trim().to_lowercase())
                        };
                        match object {
                            ObjectType::Deals => {
                                if let Some(name) =
                                    text("name").filter(|n| n.chars().count() >= MIN_DEAL_NAME)
                                {
                                    index.deals.push((name, r.record_id.clone()));
                                }
                            }
                            _ => {
                                if let Some(email) = text("email").filter(|e| e.contains('@')) {
                                    index.contacts.entry(email).or_default().push(r.record_id.clone());
                                }
                            }
                        }
                    }
                    read += page.items.len();
                    match page.next {
                        Some(next) if read < MAX_INDEXED => token = Some(next),
                        _ => break,
                    }
                }
            }
        }
        Ok(index)
    }
}

/// Adds `linked_deals` and `linked_contacts` (sorted record ids) to every live file in `files`.
pub fn link(rule: DocumentLinks, index: &LinkIndex, files: &mut [RemoteRecord]) {
    for file in files.iter_mut().filter(|f| f.object == ObjectType::Files && !f.deleted) {
        let mut deals = BTreeSet::new();
        let mut contacts = BTreeSet::<String>::new();
        if rule.by_deal_name {
            let name = file.fields.get("name").and_then(Value::as_str).unwrap_or_default().to_lowercase();
            deals.extend(
                index
                    .deals
                    .iter()
                    .filter(|(deal, _)| name.contains(deal.as_str()))
                    .map(|(_, id)| id.as_str()),
            );
        }
        if rule.by_shared_contact {
            let shared =
                file.fields.get("shared_with").and_then(Value::as_array).cloned().unwrap_or_default();
            contacts = contacts_of(index, shared.iter().filter_map(Value::as_str));
        }
        file.fields.insert("linked_deals".into(), json!(deals));
        file.fields.insert("linked_contacts".into(), json!(contacts));
    }
}

/// The contact record ids of `emails` (any case), sorted.
fn contacts_of<'a>(index: &LinkIndex, emails: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    emails
        .filter_map(|email| index.contacts.get(&email.to_lowercase()))
        .flatten()
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// Adds `linked_contacts` (sorted record ids) to every live task in `tasks`: the CRM contacts
/// whose email is one of the task's `attendees`.
pub fn link_attendees(index: &LinkIndex, tasks: &mut [RemoteRecord]) {
    for task in tasks.iter_mut().filter(|t| !t.deleted) {
        let attendees = task.fields.get("attendees").and_then(Value::as_array).cloned().unwrap_or_default();
        let contacts = contacts_of(index, attendees.iter().filter_map(Value::as_str));
        task.fields.insert("linked_contacts".into(), json!(contacts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ExternalId;
    use crate::domain::record::Fields;

    fn file(name: &str, shared: &[&str]) -> RemoteRecord {
        let mut fields = Fields::new();
        fields.insert("name".into(), json!(name));
        fields.insert("shared_with".into(), json!(shared));
        RemoteRecord {
            external_id: ExternalId::parse("1f").expect("id"),
            object: ObjectType::Files,
            fields,
            remote_modified_at: None,
            deleted: false,
            etag: None,
        }
    }

    fn id(s: &str) -> RecordId {
        RecordId::parse(s).expect("id")
    }

    #[test]
    fn a_file_links_to_deals_its_name_contains_and_contacts_it_is_shared_with_as_the_rule_says() {
        let mut index = LinkIndex::default();
        index.deals.push(("globex renewal".into(), id("r_deal1")));
        index.deals.push(("initech".into(), id("r_deal2")));
        index.contacts.insert("jane.doe@globex.example".into(), vec![id("r_c1")]);
        let mut files = vec![file("Globex Renewal - proposal", &["jane.doe@globex.example", "x@y.example"])];
        link(DocumentLinks::default(), &index, &mut files);
        assert_eq!(files[0].fields["linked_deals"], json!(["r_deal1"]));
        assert_eq!(files[0].fields["linked_contacts"], json!(["r_c1"]));
        let mut files = vec![file("Globex Renewal", &["jane.doe@globex.example"])];
        link(DocumentLinks { by_deal_name: false, by_shared_contact: true }, &index, &mut files);
        assert_eq!(files[0].fields["linked_deals"], json!([]));
        assert_eq!(files[0].fields["linked_contacts"], json!(["r_c1"]));
    }

    #[test]
    fn a_follow_up_task_links_to_the_contacts_who_attended_by_address_in_any_case() {
        let mut index = LinkIndex::default();
        index.contacts.insert("jane.doe@globex.example".into(), vec![id("r_c1")]);
        index.contacts.insert("bob@initech.example".into(), vec![id("r_c2"), id("r_c3")]);
        let task = |attendees: &[&str], deleted: bool| {
            let mut fields = Fields::new();
            fields.insert("attendees".into(), json!(attendees));
            RemoteRecord {
                external_id: ExternalId::parse("follow-up-t1").expect("id"),
                object: ObjectType::ResearchTasks,
                fields,
                remote_modified_at: None,
                deleted,
                etag: None,
            }
        };
        let mut tasks = vec![
            task(&["Jane.Doe@Globex.example", "bob@initech.example", "me@acme.example"], false),
            task(&["stranger@nowhere.example"], false),
            task(&["jane.doe@globex.example"], true),
        ];
        link_attendees(&index, &mut tasks);
        assert_eq!(tasks[0].fields["linked_contacts"], json!(["r_c1", "r_c2", "r_c3"]));
        assert_eq!(tasks[1].fields["linked_contacts"], json!([]));
        assert!(!tasks[2].fields.contains_key("linked_contacts"), "a cancelled task is left as it is");
    }
}
