//! Stateful fakes of the providers' HTTP APIs (axum servers on 127.0.0.1), for integration tests,
//! benchmarks and the local demo. Each fake speaks its provider's wire format, keeps its data in
//! memory and exposes admin routes (`/_admin/...`, the shared ones in [`admin`]) plus a Rust handle to edit data, inject faults
//! and read request counters.

pub mod admin;
pub mod channels;
pub mod drive;
pub mod fireflies;
pub mod gmail;
pub mod google;
pub mod graph;
pub mod hubspot;
pub mod notion;
pub mod oauth;
pub mod salesforce;
pub mod serving;
