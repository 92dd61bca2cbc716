//! The `pigeon` binary (being written).
fn main() {}
