//! Request coalescing: concurrent callers asking the same question share one answer. The work runs
//! in its own task, so one caller that gives up (deadline, disconnect) does not cancel it for the
//! rest; when the last caller waiting for it gives up, the work is cancelled, so none outlives the
//! callers (and the admission permits they hold).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

struct Run<V: Clone> {
    id: u64,
    shared: Shared<BoxFuture<'static, Option<V>>>,
    waiters: usize,
    abort: tokio::task::AbortHandle,
}

type InFlight<K, V> = Arc<Mutex<HashMap<K, Run<V>>>>;

pub struct Coalescer<K, V: Clone> {
    in_flight: InFlight<K, V>,
    next_id: AtomicU64,
}

impl<K, V: Clone> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> Coalescer<K, V> {
    /// Runs `work` for `key`, or joins the run already in flight. Returns the answer and whether
    /// this caller joined someone else's run. `None` if the work panicked or was cancelled.
    pub async fn run<F>(&self, key: K, work: F) -> (Option<V>, bool)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (shared, joined, id) = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match in_flight.get_mut(&key) {
                Some(run) => {
                    run.waiters += 1;
                    (run.shared.clone(), true, run.id)
                }
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    // The task forgets its key when done, however it ends.
                    let map = Arc::clone(&self.in_flight);
                    let k = key.clone();
                    let task = tokio::spawn(async move {
                        let _forget = Forget {
                            map,
                            key: Some(k),
                            id,
                        };
                        work.await
                    });
                    let abort = task.abort_handle();
                    let fut: BoxFuture<'static, Option<V>> = async move { task.await.ok() }.boxed();
                    let shared = fut.shared();
                    in_flight.insert(
                        key.clone(),
                        Run {
                            id,
                            shared: shared.clone(),
                            waiters: 1,
                            abort,
                        },
                    );
                    (shared, false, id)
                }
            }
        };
        let waiter = Waiter {
            map: Arc::clone(&self.in_flight),
            key: Some(key),
            id,
        };
        let answer = shared.await;
        drop(waiter);
        (answer, joined)
    }

    /// Runs in flight now (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// One caller waiting for a run: when the last one leaves before the run ends, the run is
/// cancelled and forgotten.
struct Waiter<K: Eq + Hash, V: Clone> {
    map: InFlight<K, V>,
    key: Option<K>,
    id: u64,
}

impl<K: Eq + Hash, V: Clone> Drop for Waiter<K, V> {
    fn drop(&mut self) {
        let Some(k) = self.key.take() else { return };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let last = match map.get_mut(&k) {
            Some(run) if run.id == self.id => {
                run.waiters = run.waiters.saturating_sub(1);
                run.waiters == 0
            }
            _ => false,
        };
        if last && let Some(run) = map.remove(&k) {
            run.abort.abort();
        }
    }
}

/// Removes a key from the in-flight map when its task ends, however it ends.
struct Forget<K: Eq + Hash, V: Clone> {
    map: InFlight<K, V>,
    key: Option<K>,
    id: u64,
}

impl<K: Eq + Hash, V: Clone> Drop for Forget<K, V> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&k).is_some_and(|run| run.id == self.id) {
                map.remove(&k);
            }
        }
    }
}

/// Places among the images being verified at once (`limits.max_in_flight`), shared by every
/// surface, taken one per image as its verification starts and never waited for (load shedding).
#[derive(Debug, Clone)]
pub struct Places {
    semaphore: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl Places {
    pub fn new(max: usize) -> Self {
        Self {
            semaphore: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    /// A place, or `None` at once.
    pub fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

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
                    tokio::time::sleep(Duration::from_millis(50)).await;
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

    #[tokio::test]
    async fn the_run_is_cancelled_when_its_last_caller_leaves_and_not_before() {
        let c = Arc::new(Coalescer::<u32, u32>::default());
        let finished = Arc::new(AtomicUsize::new(0));
        let slow = |finished: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            1
        };
        // Two callers; the first leaves early, the second stays: the run completes.
        let early = tokio::time::timeout(
            Duration::from_millis(50),
            c.run(1, slow(Arc::clone(&finished))),
        );
        let late = c.run(1, slow(Arc::clone(&finished)));
        let (early, late) = tokio::join!(early, late);
        assert!(early.is_err());
        assert_eq!(late.0, Some(1));
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        // Every caller leaves: the work is cancelled and forgotten.
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            c.run(2, slow(Arc::clone(&finished))),
        )
        .await;
        assert!(gone.is_err());
        assert_eq!(c.in_flight(), 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the abandoned run went on"
        );
    }
}
