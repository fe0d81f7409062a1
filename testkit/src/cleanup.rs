//! Cleaning up from a `Drop`, which cannot await.

use std::future::Future;

/// Runs the future `make` builds to completion on a runtime of its own, in
/// a thread of its own (so it works inside and outside a runtime), and
/// waits for it.
pub(crate) fn run_to_completion<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(make());
    })
    .join();
}
