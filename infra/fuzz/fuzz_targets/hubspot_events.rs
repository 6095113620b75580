//! HubSpot webhook bodies: parsing never panics, and every parsed event has usable ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncbridge::http::webhooks::hubspot::parse_events;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = parse_events(data) {
        for e in events {
            assert!(!e.event_id.is_empty() && e.event_id.len() <= 64);
            assert!(!e.portal_id.contains('#'));
            let _ = e.is_echo(Some("424242"));
        }
    }
});
