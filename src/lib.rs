//! Integration tests and benchmarks of the whole workspace live in tests/ and benches/.
