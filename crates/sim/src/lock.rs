//! Mutex access that survives a poisoned lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the data if a panicking thread poisoned it: the simulators' state is
/// plain data that stays consistent between statements, and a test harness should keep answering
/// rather than cascade one panic into every later request.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
