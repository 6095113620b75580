//! TODO
pub mod stack;
