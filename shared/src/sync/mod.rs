//! The sync engine: the dispatcher and worker handlers and the pull logic they share.

pub mod dispatcher;
pub mod worker;
