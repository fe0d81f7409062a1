//! Prints the worker's store statement (`STORE_BATCH`), for benchmarks that
//! run it outside the worker (bench/store-statement, bench/growth).
fn main() {
    println!("{}", *worker::test_support::store::projection::STORE_BATCH);
}
