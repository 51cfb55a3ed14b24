//! The overflow decision, in plain numbers: a compile that found no free local slot goes
//! where it is expected to finish first.
//!
//! - **Local finish** = when a local slot frees up (the compiles holding the slots, by what
//!   is left of them, then those already waiting, each taking the first slot to free up) +
//!   the unit's local compile time.
//! - **Farm finish** = the unit's remote overhead (pre-pass, uploads, downloads) + the queue
//!   wait (this machine's jobs on the farm over the worker's slots, plus what other clients'
//!   jobs were seen to add) + the unit's compile time on a worker.
//!
//! A long unit thus goes to the farm while a local slot is taken by another long one, and a
//! short one stays local when the farm's queue would hold it longer than the local slot.

/// What the machine looks like to one overflow decision. Times in ms from now.
#[derive(Debug, Clone, Default)]
pub struct Outlook {
    pub local_slots: usize,
    /// What is left of each compile holding a local slot.
    pub local_running: Vec<f64>,
    /// The expected compile times of those waiting for a local slot.
    pub local_waiting: Vec<f64>,
    /// The farm's slots (the serving worker's).
    pub farm_slots: usize,
    /// What is left of this machine's jobs on the farm (running or queued).
    pub farm_jobs: Vec<f64>,
    /// What other clients' jobs were seen to add to the queue wait (learned).
    pub farm_extra_wait: f64,
}

/// What one unit is expected to cost, in ms.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub local_ms: f64,
    pub worker_ms: f64,
    pub overhead_ms: f64,
}

/// The decision and what it was made from, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub to_farm: bool,
    pub local_finish_ms: f64,
    pub farm_finish_ms: f64,
    /// The queue wait the farm finish assumed.
    pub farm_wait_ms: f64,
}

pub fn choose(o: &Outlook, c: &Cost) -> Choice {
    let local_finish_ms = first_free(
        o.local_slots,
        o.local_running.iter().chain(&o.local_waiting),
    ) + c.local_ms;
    let farm_wait_ms = first_free(o.farm_slots.max(1), o.farm_jobs.iter()) + o.farm_extra_wait;
    let farm_finish_ms = c.overhead_ms + farm_wait_ms + c.worker_ms;
    Choice {
        to_farm: farm_finish_ms < local_finish_ms,
        local_finish_ms,
        farm_finish_ms,
        farm_wait_ms,
    }
}

/// When the first of `slots` slots frees up, given the jobs ahead (in order, each taking
/// the slot that frees up first).
fn first_free<'a>(slots: usize, ahead: impl Iterator<Item = &'a f64>) -> f64 {
    if slots == 0 {
        return f64::INFINITY;
    }
    let mut free = vec![0.0_f64; slots];
    for job in ahead {
        let first = free
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("slots > 0");
        *first += job.max(0.0);
    }
    free.into_iter().fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One local slot busy for another 800 ms, a 1-slot farm, ~50 ms of remote overhead.
    fn outlook() -> Outlook {
        Outlook {
            local_slots: 1,
            local_running: vec![800.0],
            farm_slots: 1,
            ..Outlook::default()
        }
    }

    fn cost(ms: f64) -> Cost {
        Cost {
            local_ms: ms,
            worker_ms: ms,
            overhead_ms: 50.0,
        }
    }

    #[test]
    fn a_long_unit_goes_to_an_idle_farm_and_a_short_one_then_stays_local() {
        let mut o = outlook();
        let long = choose(&o, &cost(3000.0));
        assert!(long.to_farm, "{long:?}");
        assert_eq!(
            (long.local_finish_ms, long.farm_finish_ms),
            (3800.0, 3050.0)
        );
        // The long one now holds the farm's slot: a short one is done sooner here.
        o.farm_jobs.push(3000.0);
        let short = choose(&o, &cost(100.0));
        assert!(!short.to_farm, "{short:?}");
        assert_eq!(
            (short.local_finish_ms, short.farm_finish_ms),
            (900.0, 3150.0)
        );
    }

    #[test]
    fn waiting_compiles_count_ahead_of_this_one() {
        let mut o = outlook();
        o.farm_jobs.push(1000.0);
        // Alone, local (800 + 100) beats the farm (50 + 1000 + 100).
        assert!(!choose(&o, &cost(100.0)).to_farm);
        // Behind two waiting 400 ms compiles, local is 1700: the farm's 1150 wins.
        o.local_waiting = vec![400.0, 400.0];
        let c = choose(&o, &cost(100.0));
        assert!(c.to_farm, "{c:?}");
        assert_eq!(c.local_finish_ms, 1700.0);
        // With two local slots (the second free), local starts at once.
        o.local_slots = 2;
        assert_eq!(choose(&o, &cost(100.0)).local_finish_ms, 900.0);
    }

    #[test]
    fn a_slow_or_busy_farm_is_skipped() {
        let o = outlook();
        // A distant farm: 2 s of round trips.
        let far = Cost {
            overhead_ms: 2000.0,
            ..cost(500.0)
        };
        assert!(!choose(&o, &far).to_farm);
        // Others' jobs were seen to hold the farm's slot for ~5 s.
        let busy = Outlook {
            farm_extra_wait: 5000.0,
            ..outlook()
        };
        assert!(!choose(&busy, &cost(3000.0)).to_farm);
        // A worker half as fast as this machine: worth it only when the local wait is long.
        let slow_worker = Cost {
            worker_ms: 2000.0,
            ..cost(1000.0)
        };
        assert!(!choose(&o, &slow_worker).to_farm);
        let long_wait = Outlook {
            local_running: vec![1500.0],
            ..outlook()
        };
        assert!(choose(&long_wait, &slow_worker).to_farm);
    }

    #[test]
    fn farm_slots_share_the_queue() {
        let o = Outlook {
            farm_slots: 2,
            farm_jobs: vec![1000.0, 3000.0, 500.0],
            ..outlook()
        };
        // Slot A: 1000 then 500 = 1500; slot B: 3000. The first frees at 1500.
        assert_eq!(choose(&o, &cost(100.0)).farm_wait_ms, 1500.0);
    }
}
