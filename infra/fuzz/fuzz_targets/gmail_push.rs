//! Gmail's Pub/Sub push bodies: parsing never panics, and a parsed push always names a bounded
//! mailbox address and message id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncbridge::http::webhooks::gmail::parse_push;

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = parse_push(data) {
        assert!(push.email.contains('@') && push.email.len() <= 320);
        assert!(!push.message_id.is_empty() && push.message_id.len() <= 320);
    }
});
