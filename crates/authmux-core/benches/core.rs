//! Benchmarks of the session manager (written with the benchmark task).
fn main() {}
