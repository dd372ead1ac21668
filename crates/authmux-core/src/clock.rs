//! Injectable wall-clock time: [`SystemClock`] for production, [`ManualClock`] for tests.
//!
//! Every expiry decision in authmux reads time through a [`Clock`], never through
//! `SystemTime::now()` directly, so lifecycle logic can be tested without sleeping.
//! (Delays between retries use tokio's timer, which tests control with
//! `tokio::time::pause`.)

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use authmux_core::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let before = clock.now();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(90));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Microseconds since the Unix epoch (may be negative, though tests rarely need it).
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock set to the given time.
    pub fn new(at: SystemTime) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(to_micros(at))),
        }
    }

    /// A manual clock set to `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// A manual clock starting at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(by, Ordering::SeqCst);
    }

    /// Moves the clock backward (for clock-skew tests).
    pub fn rewind(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_sub(by, Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set(&self, at: SystemTime) {
        self.micros.store(to_micros(at), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let micros = self.micros.load(Ordering::SeqCst);
        if micros >= 0 {
            UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
        }
    }
}

fn to_micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Seconds since the Unix epoch, saturating at zero for times before it.
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
