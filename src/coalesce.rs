//! Request coalescing: concurrent callers asking the same question share one answer. The work runs
//! in its own task, so a caller that gives up (deadline, disconnect) does not cancel it for the rest.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type InFlight<K, V> = Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, Option<V>>>>>>;

pub struct Coalescer<K, V: Clone> {
    in_flight: InFlight<K, V>,
}

impl<K, V: Clone> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> Coalescer<K, V> {
    /// Runs `work` for `key`, or joins the run already in flight. Returns the answer and whether
    /// this caller joined someone else's run. `None` only if the work panicked.
    pub async fn run<F>(&self, key: K, work: F) -> (Option<V>, bool)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (shared, joined) = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match in_flight.get(&key) {
                Some(s) => (s.clone(), true),
                None => {
                    // The task forgets its key when done, even if every caller has gone.
                    let map = Arc::clone(&self.in_flight);
                    let k = key.clone();
                    let task = tokio::spawn(async move {
                        let _forget = Forget { map, key: Some(k) };
                        work.await
                    });
                    let fut: BoxFuture<'static, Option<V>> = async move { task.await.ok() }.boxed();
                    let shared = fut.shared();
                    in_flight.insert(key.clone(), shared.clone());
                    (shared, false)
                }
            }
        };
        (shared.await, joined)
    }
}

/// Removes a key from the in-flight map when its task ends, however it ends.
struct Forget<K: Eq + Hash, V: Clone> {
    map: InFlight<K, V>,
    key: Option<K>,
}

impl<K: Eq + Hash, V: Clone> Drop for Forget<K, V> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let c = Arc::new(Coalescer::<u32, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|_| {
            let (c, runs) = (Arc::clone(&c), Arc::clone(&runs));
            async move {
                c.run(7, async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    42
                })
                .await
            }
        });
        let answers = futures::future::join_all(calls).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|(v, _)| *v == Some(42)));
        assert_eq!(answers.iter().filter(|(_, joined)| *joined).count(), 49);
        // Once finished, the next call runs again.
        let (v, joined) = c.run(7, async { 43 }).await;
        assert_eq!((v, joined), (Some(43), false));
    }
}
