//! Microsoft Graph notification bodies: parsing never panics, and a parsed notification always
//! names its subscription.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncbridge::http::webhooks::graph::parse_notifications;

fuzz_target!(|data: &[u8]| {
    if let Ok(notes) = parse_notifications(data) {
        for n in notes {
            assert!(!n.subscription_id.is_empty() && n.subscription_id.len() <= 256);
        }
    }
});
