//! Google push notification headers: any set of `X-Goog-*` values parses or is refused, never
//! panics. The input is `name=value` lines; names are taken from the five Google headers.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use syncbridge::http::webhooks::google::{
    CHANNEL_ID_HEADER, CHANNEL_TOKEN_HEADER, MESSAGE_NUMBER_HEADER, RESOURCE_ID_HEADER,
    RESOURCE_STATE_HEADER, parse_headers,
};

const NAMES: [&str; 5] = [
    CHANNEL_ID_HEADER,
    CHANNEL_TOKEN_HEADER,
    RESOURCE_STATE_HEADER,
    RESOURCE_ID_HEADER,
    MESSAGE_NUMBER_HEADER,
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((&selector, value)) = line.split_first() else { continue };
        let name = HeaderName::from_static(NAMES[usize::from(selector) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    if let Ok(n) = parse_headers(&headers) {
        assert!(!n.channel_id.is_empty());
    }
});
