//! [`Alarm`]: the deadline of one exchange of the default transport, kept off the
//! runtime's timer wheel.
//!
//! Every exchange of the default transport has a deadline (its timeout, 30 s by
//! default), and almost every exchange ends long before it. A `tokio` timer armed per
//! exchange costs each request an insertion into and a removal from the runtime's timer
//! wheel, under locks the worker threads share, and keeps the wheel busy at every
//! worker's park: measured against plain reqwest, that was about half of
//! `SessionManager::send`'s extra CPU time (docs/benchmarks.md). An alarm instead puts
//! its task's waker into a bucket of the current thread (one bucket per thread and per
//! grain of deadlines), and one watchdog thread, shared by the process, wakes a
//! bucket's tasks when its time has come. The woken exchange finds its deadline passed
//! and ends with a timeout.
//!
//! - An alarm rings at its deadline or a little after (at most one grain, 1/64 of the
//!   time it was set for and never more than 100 ms, plus the watchdog's wake-up
//!   latency); never before.
//! - Setting one touches the current thread's bucket only (an uncontended lock); the
//!   watchdog's lock is taken once per bucket, not per alarm.
//! - Dropping an alarm (the exchange ended, or its caller gave up) takes its waker out.
//! - It runs on the real clock (`std::time::Instant`): `tokio::time::pause` does not
//!   move it.
//! - Should the watchdog thread fail to start, alarms fall back to `tokio` timers.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The coarsest grain of deadlines sharing a bucket.
const MAX_GRAIN: Duration = Duration::from_millis(100);

/// The deadline of one exchange: [`Alarm::poll_ring`] is ready once it has passed.
pub(crate) struct Alarm {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not waiting yet (never polled while the deadline was ahead).
    Unset,
    /// The task's waker is at `index` in `bucket`.
    Set { bucket: Arc<Bucket>, index: usize },
    /// No watchdog thread: a `tokio` timer.
    Fallback(Pin<Box<tokio::time::Sleep>>),
}

impl Alarm {
    /// An alarm for `deadline`.
    pub(crate) fn at(deadline: Instant) -> Self {
        Self {
            deadline,
            state: State::Unset,
        }
    }

    /// Ready once the deadline has passed; until then the task is woken when it does.
    pub(crate) fn poll_ring(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let State::Fallback(sleep) = &mut self.state {
            return sleep.as_mut().poll(cx);
        }
        let now = Instant::now();
        if now >= self.deadline {
            self.unset();
            return Poll::Ready(());
        }
        match &self.state {
            State::Set { bucket, index } => {
                let mut wakers = lock(&bucket.wakers);
                match wakers.slots.get_mut(*index) {
                    Some(Some(waker)) if waker.will_wake(cx.waker()) => {}
                    Some(slot) => *slot = Some(cx.waker().clone()),
                    None => {}
                }
                if wakers.rung {
                    cx.waker().wake_by_ref();
                }
            }
            State::Unset => match watchdog() {
                Some(watchdog) => {
                    let bucket = current_bucket(watchdog, bucket_end(now, self.deadline));
                    let index = {
                        let mut wakers = lock(&bucket.wakers);
                        if wakers.rung {
                            // Rung between the check above and now (the watchdog runs
                            // late): poll again, and find the deadline passed.
                            cx.waker().wake_by_ref();
                        }
                        wakers.insert(cx.waker().clone())
                    };
                    self.state = State::Set { bucket, index };
                }
                None => {
                    let mut sleep =
                        Box::pin(tokio::time::sleep_until(self.deadline.into()));
                    let ready = sleep.as_mut().poll(cx);
                    self.state = State::Fallback(sleep);
                    return ready;
                }
            },
            State::Fallback(_) => unreachable!("handled above"),
        }
        Poll::Pending
    }

    fn unset(&mut self) {
        if let State::Set { bucket, index } = std::mem::replace(&mut self.state, State::Unset) {
            let waker = lock(&bucket.wakers).remove(index);
            // Dropped outside the lock: dropping a waker may run the task's own code.
            drop(waker);
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.unset();
    }
}

/// The end of the bucket for `deadline`: rounded up to the grain, a 64th of the time
/// left (at most [`MAX_GRAIN`]), on a grid common to the process so that alarms set
/// for about the same time share one.
fn bucket_end(now: Instant, deadline: Instant) -> Instant {
    let grain = ((deadline - now) / 64).clamp(Duration::from_millis(1), MAX_GRAIN);
    let epoch = *EPOCH.get_or_init(|| now);
    let since = deadline.saturating_duration_since(epoch);
    let grain_ns = grain.as_nanos();
    let rounded = since.as_nanos().div_ceil(grain_ns) * grain_ns;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The wakers of the alarms of one thread ending in one grain.
struct Bucket {
    ends: Instant,
    wakers: Mutex<Wakers>,
}

/// A slab of wakers: freed slots are reused, indexes stay put.
#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
    /// The watchdog rang this bucket: its wakers were woken and taken.
    rung: bool,
}

impl Wakers {
    fn insert(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(waker);
                index
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, index: usize) -> Option<Waker> {
        let waker = self.slots.get_mut(index)?.take();
        if !self.rung {
            self.free.push(index);
        }
        waker
    }
}

thread_local! {
    /// The bucket this thread set its last alarm in.
    static CURRENT: RefCell<Option<Arc<Bucket>>> = const { RefCell::new(None) };
}

/// This thread's bucket ending at `ends`, made (and handed to the watchdog) when the
/// last one ends at another time.
fn current_bucket(watchdog: &'static Watchdog, ends: Instant) -> Arc<Bucket> {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        if let Some(bucket) = current.as_ref().filter(|b| b.ends == ends) {
            return Arc::clone(bucket);
        }
        let bucket = Arc::new(Bucket {
            ends,
            wakers: Mutex::new(Wakers::default()),
        });
        watchdog.queue(Arc::clone(&bucket));
        *current = Some(Arc::clone(&bucket));
        bucket
    })
}

/// The thread that rings buckets when they end.
struct Watchdog {
    due: Mutex<BinaryHeap<Reverse<Queued>>>,
    changed: Condvar,
}

/// A bucket in the watchdog's queue, ordered by its end.
struct Queued(Arc<Bucket>);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.0.ends == other.0.ends
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.ends.cmp(&other.0.ends)
    }
}

impl Watchdog {
    fn queue(&self, bucket: Arc<Bucket>) {
        let mut due = lock(&self.due);
        let sooner = due.peek().is_none_or(|Reverse(top)| bucket.ends < top.0.ends);
        due.push(Reverse(Queued(bucket)));
        drop(due);
        if sooner {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = lock(&self.due);
        loop {
            let now = Instant::now();
            let mut ended = Vec::new();
            while let Some(Reverse(top)) = due.peek()
                && top.0.ends <= now
            {
                if let Some(Reverse(Queued(bucket))) = due.pop() {
                    ended.push(bucket);
                }
            }
            if !ended.is_empty() {
                drop(due);
                for bucket in ended {
                    let wakers = {
                        let mut wakers = lock(&bucket.wakers);
                        wakers.rung = true;
                        std::mem::take(&mut wakers.slots)
                    };
                    wakers.into_iter().flatten().for_each(Waker::wake);
                }
                due = lock(&self.due);
                continue;
            }
            due = match due.peek() {
                Some(Reverse(top)) => {
                    let wait = top.0.ends.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(due, wait)
                        .map_or_else(|e| e.into_inner().0, |(guard, _)| guard)
                }
                None => self
                    .changed
                    .wait(due)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

/// The process's watchdog, started on first use; `None` if its thread cannot start.
fn watchdog() -> Option<&'static Watchdog> {
    static WATCHDOG: OnceLock<Option<&'static Watchdog>> = OnceLock::new();
    *WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            due: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("authmux-alarm".into())
            .spawn(move || watchdog.run())
            .ok()
            .map(|_| watchdog)
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    async fn ring(deadline: Instant) {
        let mut alarm = Alarm::at(deadline);
        poll_fn(|cx| alarm.poll_ring(cx)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rings_at_its_deadline_never_before_and_not_much_after() {
        for millis in [1u64, 20, 150] {
            let started = Instant::now();
            let deadline = started + Duration::from_millis(millis);
            ring(deadline).await;
            let rang = Instant::now();
            assert!(rang >= deadline, "rang early");
            // The grain (at most 100 ms) plus scheduling slack on a loaded machine.
            assert!(
                rang - deadline < Duration::from_millis(100) + Duration::from_secs(2),
                "rang {:?} late",
                rang - deadline
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_alarms_on_several_threads_all_ring() {
        let start = Instant::now();
        let tasks: Vec<_> = (0..200u64)
            .map(|n| tokio::spawn(ring(start + Duration::from_millis(5 + n % 40))))
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("an alarm never rang")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_dropped_alarm_leaves_its_slot_for_the_next() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut first = Alarm::at(deadline);
        assert!(first.poll_ring(&mut cx).is_pending());
        let State::Set { bucket, index } = &first.state else {
            panic!("not set")
        };
        let (bucket, index) = (Arc::clone(bucket), *index);
        drop(first);
        assert!(lock(&bucket.wakers).slots[index].is_none(), "the waker stayed");
        let mut second = Alarm::at(deadline);
        assert!(second.poll_ring(&mut cx).is_pending());
        let State::Set { index: reused, .. } = &second.state else {
            panic!("not set")
        };
        assert_eq!(*reused, index);
    }

    #[test]
    fn buckets_round_deadlines_up_to_a_grain_of_a_64th_of_the_wait() {
        let now = Instant::now();
        for wait in [Duration::from_millis(3), Duration::from_secs(1), Duration::from_secs(30)] {
            let deadline = now + wait;
            let end = bucket_end(now, deadline);
            assert!(end >= deadline);
            let grain = (wait / 64).clamp(Duration::from_millis(1), MAX_GRAIN);
            assert!(end - deadline < grain, "{wait:?}: {:?}", end - deadline);
        }
    }
}
