//! End-to-end tests of cae-bench live in `tests/tests/`; this library is empty on purpose.
