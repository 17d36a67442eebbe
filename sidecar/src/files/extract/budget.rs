//! What one extraction may spend: a deadline, a cancellation flag its caller sets when it gives
//! up, a nesting limit, and a count of the work done (bytes and events looked at).
//!
//! Extractors call [`Budget::spend`] in their inner loops; every [`CHECK_EVERY`] units it looks
//! at the clock and the flag, so a stopped extraction ends within microseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Units of work between two looks at the clock and the cancellation flag.
pub const CHECK_EVERY: u64 = 16 * 1024;

/// Default deepest nesting of JSON arrays/objects and XML elements.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Why an extraction stopped before the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The output reached its cap (not an error: the text is marked truncated).
    Full,
    /// The deadline passed.
    Timeout,
    /// The caller gave up.
    Cancelled,
    /// JSON or XML nested deeper than the limit.
    TooDeep,
}

/// The limits of one extraction and the work it has done.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
    max_depth: usize,
    max_steps: u64,
    steps: u64,
    next_check: u64,
}

impl Budget {
    /// A budget that ends at `deadline` or when `cancel` becomes true.
    pub fn new(
        deadline: Option<Instant>,
        cancel: Option<Arc<AtomicBool>>,
        max_depth: usize,
    ) -> Budget {
        Budget {
            deadline,
            cancel,
            max_depth,
            max_steps: u64::MAX,
            steps: 0,
            next_check: 0,
        }
    }

    /// Also stops (as [`Stop::Timeout`]) once more than `steps` units of work were done: a
    /// deadline that does not depend on the machine's speed (tests and fuzzing).
    pub fn with_step_limit(mut self, steps: u64) -> Budget {
        self.max_steps = steps;
        self
    }

    /// No deadline and no caller to give up, the default nesting limit.
    #[allow(dead_code)] // For the tests and the fuzz targets.
    pub fn unlimited() -> Budget {
        Budget::new(None, None, DEFAULT_MAX_DEPTH)
    }

    /// The same deadline, flag and nesting limit, with its own work count.
    pub fn share(&self) -> Budget {
        Budget::new(self.deadline, self.cancel.clone(), self.max_depth)
            .with_step_limit(self.max_steps)
    }

    /// Counts `units` of work; stops when the deadline passed or the caller gave up.
    #[inline]
    pub fn spend(&mut self, units: usize) -> Result<(), Stop> {
        self.steps = self.steps.saturating_add(units as u64);
        if self.steps >= self.next_check {
            self.check()
        } else {
            Ok(())
        }
    }

    /// Looks at the flag and the clock now.
    pub fn check(&mut self) -> Result<(), Stop> {
        self.next_check = self.steps.saturating_add(CHECK_EVERY);
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(Stop::Cancelled);
        }
        if self.steps > self.max_steps || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stop::Timeout);
        }
        Ok(())
    }

    /// Refuses nesting deeper than the limit.
    pub fn enter(&self, depth: usize) -> Result<(), Stop> {
        if depth > self.max_depth {
            Err(Stop::TooDeep)
        } else {
            Ok(())
        }
    }

    /// The nesting limit.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Units of work counted so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stops_on_the_flag_and_the_clock() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut b = Budget::new(None, Some(flag.clone()), 4);
        assert_eq!(b.spend(1), Ok(()));
        flag.store(true, Ordering::Relaxed);
        // Seen at the next check, at most CHECK_EVERY units later.
        let mut stopped = None;
        for i in 0..=CHECK_EVERY {
            if let Err(s) = b.spend(1) {
                stopped = Some((i, s));
                break;
            }
        }
        assert_eq!(stopped.map(|s| s.1), Some(Stop::Cancelled));
        let mut b = Budget::new(Some(Instant::now() - Duration::from_millis(1)), None, 4);
        assert_eq!(b.spend(1), Err(Stop::Timeout));
        assert_eq!(b.enter(4), Ok(()));
        assert_eq!(b.enter(5), Err(Stop::TooDeep));
    }
}
