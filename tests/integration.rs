//! The one integration-test binary (it links once); a module per feature under `tests/it/`.

// Test code asserts by unwrapping: a panic is a failed test with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod it;
