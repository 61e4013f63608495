//! The blast-radius guard: the most targets the mutating calls of one run may touch.

use std::sync::Mutex;

/// Counts the targets a run's mutating calls touch, refusing the call that would pass the cap.
#[derive(Debug)]
pub(crate) struct Guard {
    cap: u64,
    used: Mutex<u64>,
}

/// A call the guard refused, with the figures a person needs to decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Targets the refused call would have touched.
    pub targets: u64,
    /// Targets already changed by the run.
    pub used: u64,
    /// The cap.
    pub cap: u64,
}

impl Guard {
    pub fn new(cap: u64) -> Self {
        Guard {
            cap,
            used: Mutex::new(0),
        }
    }

    /// The cap.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Counts targets earlier attempts of the run changed (or may have).
    pub fn preload(&self, targets: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_add(targets);
    }

    /// Takes `targets` from the budget, or refuses without taking anything.
    pub fn reserve(&self, targets: u64) -> Result<(), Refusal> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.saturating_add(targets) > self.cap {
            return Err(Refusal {
                targets,
                used: *used,
                cap: self.cap,
            });
        }
        *used += targets;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_that_would_pass_the_cap_is_refused_and_takes_nothing() {
        let guard = Guard::new(5);
        assert_eq!(guard.reserve(3), Ok(()));
        assert_eq!(
            guard.reserve(3),
            Err(Refusal {
                targets: 3,
                used: 3,
                cap: 5
            })
        );
        // The refusal took nothing: two more still fit, exactly to the cap.
        assert_eq!(guard.reserve(2), Ok(()));
        assert!(guard.reserve(1).is_err());
        assert_eq!(guard.reserve(0), Ok(()), "a call touching nothing is never refused");
    }
}
