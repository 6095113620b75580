//! Integration tests

mod aws_adapters;
mod aws_support;
