//! The fake HubSpot account's contacts: seeded lazily from a seed (only edits are stored), indexed
//! by id and by `(lastmodifieddate, id)`, with timestamps that only move forward.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// 2024-01-01T00:00:00Z in epoch milliseconds: seeded contacts are created from here on.
pub const SEED_BASE_MS: i64 = 1_704_067_200_000;

const THIRTY_DAYS_MS: i64 = 30 * 86_400_000;

/// Properties every contact answers (seeded ones are derived from the seed and the id).
pub const KNOWN_PROPERTIES: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "company",
    "jobtitle",
    "lifecyclestage",
    "hs_lead_status",
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
    "hs_object_id",
];

/// HubSpot's default properties for contacts in list and search answers.
pub const DEFAULT_PROPERTIES: &[&str] =
    &["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"];

const FIRST: &[&str] = &[
    "Ada", "Brian", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam",
    "Maya", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Ximena",
    "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
    "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quispe", "Rossi", "Schmidt", "Tanaka",
    "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhang",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Tyrell",
    "Soylent",
    "Vandelay Industries",
    "Aperture",
    "Cyberdyne",
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "Head of Sales",
    "Account Executive",
    "Engineer",
    "Marketing Manager",
    "Operations Lead",
    "Designer",
    "Analyst",
    "Consultant",
];
const STAGES: &[&str] =
    &["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"];
const LEAD_STATUS: &[&str] = &[
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick(seed: u64, id: u64, salt: u64, list: &[&'static str]) -> &'static str {
    let h = mix(seed ^ mix(id.wrapping_mul(31).wrapping_add(salt)));
    list[(h % list.len() as u64) as usize]
}

/// Formats epoch milliseconds the way HubSpot does (`2024-01-01T00:00:00.000Z`).
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a HubSpot date filter value: epoch milliseconds or an ISO 8601 instant.
pub fn parse_instant(value: &str) -> Option<i64> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return Some(ms);
    }
    DateTime::parse_from_rfc3339(value.trim()).ok().map(|d| d.timestamp_millis())
}

/// One stored contact. Seeded contacts store only their edits in `overrides`.
#[derive(Debug, Clone)]
pub struct Contact {
    pub created_ms: i64,
    pub modified_ms: i64,
    pub archived_at: Option<i64>,
    seeded: bool,
    overrides: BTreeMap<String, String>,
}

/// The contact table and its modification index.
#[derive(Debug)]
pub struct Store {
    seed: u64,
    contacts: BTreeMap<u64, Contact>,
    by_modified: BTreeSet<(i64, u64)>,
    next_id: u64,
    last_stamp: i64,
}

impl Store {
    /// `count` contacts with ids `1..=count`, created 100 ms apart from [`SEED_BASE_MS`] and last
    /// modified from 30 days later on, in groups of three sharing one instant.
    pub fn seeded(count: usize, seed: u64) -> Self {
        let mut contacts = BTreeMap::new();
        let mut by_modified = BTreeSet::new();
        let mut last_stamp = SEED_BASE_MS;
        for i in 1..=count as u64 {
            let created_ms = SEED_BASE_MS + (i as i64) * 100;
            let modified_ms = created_ms.max(SEED_BASE_MS + THIRTY_DAYS_MS + ((i / 3) as i64) * 1_000);
            last_stamp = last_stamp.max(modified_ms);
            contacts.insert(
                i,
                Contact {
                    created_ms,
                    modified_ms,
                    archived_at: None,
                    seeded: true,
                    overrides: BTreeMap::new(),
                },
            );
            by_modified.insert((modified_ms, i));
        }
        Self { seed, contacts, by_modified, next_id: count as u64 + 1, last_stamp }
    }

    /// A timestamp strictly greater than every one handed out so far (and not before now).
    pub fn next_stamp(&mut self) -> i64 {
        let stamp = Utc::now().timestamp_millis().max(self.last_stamp + 1);
        self.last_stamp = stamp;
        stamp
    }

    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&Contact> {
        self.contacts.get(&id)
    }

    /// The value of `name` on contact `id` (`None` when unset or empty).
    pub fn property(&self, id: u64, c: &Contact, name: &str) -> Option<String> {
        if let Some(v) = c.overrides.get(name) {
            return (!v.is_empty()).then(|| v.clone());
        }
        let s = self.seed;
        let seeded = |salt: u64, list: &[&'static str]| c.seeded.then(|| pick(s, id, salt, list).to_owned());
        match name {
            "hs_object_id" => Some(id.to_string()),
            "createdate" => Some(iso(c.created_ms)),
            "lastmodifieddate" | "hs_lastmodifieddate" => Some(iso(c.modified_ms)),
            "firstname" => seeded(1, FIRST),
            "lastname" => seeded(2, LAST),
            "company" => seeded(3, COMPANIES),
            "jobtitle" => seeded(4, TITLES),
            "lifecyclestage" => seeded(5, STAGES),
            "hs_lead_status" => seeded(6, LEAD_STATUS),
            "email" => c.seeded.then(|| {
                format!("{}.{}.{id}@example.com", pick(s, id, 1, FIRST), pick(s, id, 2, LAST)).to_lowercase()
            }),
            "phone" => c.seeded.then(|| format!("+1-555-{:04}", mix(s ^ id) % 10_000)),
            _ => None,
        }
    }

    /// The numeric value of a date or id property, for comparisons and sorting.
    pub fn numeric(&self, id: u64, c: &Contact, name: &str) -> Option<i64> {
        match name {
            "hs_object_id" => i64::try_from(id).ok(),
            "createdate" => Some(c.created_ms),
            "lastmodifieddate" | "hs_lastmodifieddate" => Some(c.modified_ms),
            _ => None,
        }
    }

    /// The contact as HubSpot's `SimplePublicObject` JSON with the requested properties.
    pub fn render(&self, id: u64, c: &Contact, properties: &[String]) -> Value {
        let mut props = Map::new();
        let defaults = DEFAULT_PROPERTIES.iter().map(|p| (*p).to_owned());
        let names: BTreeSet<String> = if properties.is_empty() {
            defaults.collect()
        } else {
            properties.iter().cloned().chain(std::iter::once("hs_object_id".to_owned())).collect()
        };
        for name in names {
            let v = self.property(id, c, &name).map(Value::String).unwrap_or(Value::Null);
            props.insert(name, v);
        }
        let mut obj = json!({
            "id": id.to_string(),
            "properties": props,
            "createdAt": iso(c.created_ms),
            "updatedAt": iso(c.modified_ms),
            "archived": c.archived_at.is_some(),
        });
        if let (Some(at), Some(map)) = (c.archived_at, obj.as_object_mut()) {
            map.insert("archivedAt".into(), Value::String(iso(at)));
        }
        obj
    }

    /// Ids in `[from, ..)` order, archived or not as asked, at most `limit`.
    pub fn ids_from(&self, from: u64, archived: bool, limit: usize) -> Vec<u64> {
        self.contacts
            .range(from..)
            .filter(|(_, c)| c.archived_at.is_some() == archived)
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }

    /// Ids of live contacts whose `lastmodifieddate` is within `[lo, hi]`, in `(modified, id)` order.
    pub fn modified_between(&self, lo: i64, hi: i64) -> impl Iterator<Item = u64> + '_ {
        self.by_modified
            .range((lo, 0)..=(hi, u64::MAX))
            .map(|(_, id)| *id)
            .filter(|id| self.contacts.get(id).is_some_and(|c| c.archived_at.is_none()))
    }

    /// Creates a contact with these properties; returns its id.
    pub fn create(&mut self, properties: BTreeMap<String, String>) -> u64 {
        let stamp = self.next_stamp();
        let id = self.next_id;
        self.next_id += 1;
        let overrides = properties.into_iter().filter(|(k, _)| writable(k)).collect();
        self.contacts.insert(
            id,
            Contact { created_ms: stamp, modified_ms: stamp, archived_at: None, seeded: false, overrides },
        );
        self.by_modified.insert((stamp, id));
        id
    }

    /// Sets properties on a live contact at `stamp` (or a fresh one); `false` if it is not there.
    pub fn update(&mut self, id: u64, properties: &BTreeMap<String, String>, stamp: Option<i64>) -> bool {
        if self.contacts.get(&id).is_none_or(|c| c.archived_at.is_some()) {
            return false;
        }
        let stamp = stamp.unwrap_or_else(|| self.next_stamp());
        let Some(c) = self.contacts.get_mut(&id) else { return false };
        for (k, v) in properties.iter().filter(|(k, _)| writable(k)) {
            c.overrides.insert(k.clone(), v.clone());
        }
        self.by_modified.remove(&(c.modified_ms, id));
        c.modified_ms = stamp;
        self.by_modified.insert((stamp, id));
        true
    }

    /// Archives a live contact (it leaves search and the default listing); `false` if absent.
    pub fn archive(&mut self, id: u64) -> bool {
        if self.contacts.get(&id).is_none_or(|c| c.archived_at.is_some()) {
            return false;
        }
        let stamp = self.next_stamp();
        let Some(c) = self.contacts.get_mut(&id) else { return false };
        c.archived_at = Some(stamp);
        self.by_modified.remove(&(c.modified_ms, id));
        c.modified_ms = stamp;
        self.by_modified.insert((stamp, id));
        true
    }

    /// All ids, archived or not.
    pub fn all_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.contacts.keys().copied()
    }

    pub fn max_modified(&self) -> Option<i64> {
        self.by_modified.last().map(|(m, _)| *m)
    }
}

fn writable(name: &str) -> bool {
    !matches!(name, "hs_object_id" | "createdate" | "lastmodifieddate" | "hs_lastmodifieddate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_deterministic_and_shares_some_timestamps() {
        let a = Store::seeded(30, 7);
        let b = Store::seeded(30, 7);
        let c = Store::seeded(30, 8);
        let name = |s: &Store, id| s.property(id, s.get(id).unwrap(), "email");
        assert_eq!(name(&a, 5), name(&b, 5));
        assert!((1..=30).any(|id| name(&a, id) != name(&c, id)));
        let stamps: BTreeSet<i64> = (1..=30).map(|id| a.get(id).unwrap().modified_ms).collect();
        assert!(stamps.len() < 30);
    }

    #[test]
    fn edits_get_a_timestamp_above_every_existing_one() {
        let mut s = Store::seeded(10, 1);
        let before = s.max_modified().unwrap();
        let props = BTreeMap::from([("firstname".to_owned(), "Zed".to_owned())]);
        assert!(s.update(3, &props, None));
        let c = s.get(3).unwrap();
        assert!(c.modified_ms > before);
        assert_eq!(s.property(3, c, "firstname").as_deref(), Some("Zed"));
        let first = s.next_stamp();
        assert!(s.next_stamp() > first);
        assert!(!s.update(99, &props, None));
    }
}
