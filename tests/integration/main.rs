//! Integration tests

mod stack;
