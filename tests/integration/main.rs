//! Integration tests

mod hubspot_adapter;
