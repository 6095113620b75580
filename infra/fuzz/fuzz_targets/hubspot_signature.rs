//! The HubSpot v3 signature check on arbitrary headers, URI and body: never panics, and never
//! accepts a signature that was not made with the secret (a valid one made here always verifies).
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncbridge::http::webhooks::hubspot::{sign, signed_uri, verify_signature};

const SECRET: &[u8] = b"fuzz-client-secret";
const NOW_MS: i64 = 1_790_000_000_000;

fuzz_target!(|data: &[u8]| {
    // Split the input into path, timestamp, signature and body at the first three NULs.
    let mut parts = data.splitn(4, |b| *b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let timestamp = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let signature = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let uri = signed_uri("https://hooks.example.com/prod", &path);

    let result = verify_signature(SECRET, "POST", &uri, body, Some(&timestamp), Some(&signature), NOW_MS);
    if result.is_ok() {
        assert_eq!(
            signature.trim(),
            sign(SECRET, "POST", &uri, body, &timestamp),
            "accepted a forged signature"
        );
    }
    let genuine = sign(SECRET, "POST", &uri, body, &timestamp);
    let expected_ok = timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| NOW_MS.checked_sub(t).and_then(i64::checked_abs).is_some_and(|d| d <= 5 * 60 * 1000));
    let checked = verify_signature(SECRET, "POST", &uri, body, Some(&timestamp), Some(&genuine), NOW_MS);
    assert_eq!(checked.is_ok(), expected_ok);
});
