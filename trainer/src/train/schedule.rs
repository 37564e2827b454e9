//! The learning-rate schedule: a linear warm-up, then cosine decay to 2 % of the peak, built
//! from burn's schedulers (linear, cosine annealing, run one after the other).
//!
//! A resumed run rebuilds it and steps it to the run's next step, so it takes the rate an
//! uninterrupted run takes there, with nothing saved beside the optimizer. A run that trains a
//! later part of a longer schedule (`--schedule-done`) steps it the same way, and warms the rate
//! up again over its first steps: it starts from a model folder, without the optimizer's
//! moments, and AdamW's first steps on fresh moments move every weight by about the full rate.

use anyhow::Result;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::lr_scheduler::LrSchedulerConfig;

use super::TrainConfig;

/// Steps of linear warm-up: one epoch, or a tenth of the run if that is shorter (at least one).
fn warm_up_steps(steps_per_epoch: usize, total_steps: usize) -> usize {
    steps_per_epoch.min(total_steps / 10).max(1)
}

/// The learning rate of each step of a run, in order.
pub struct Schedule {
    scheduler: ModuleLrScheduler,
    /// The step `next_rate` gives the rate of (0-based, over the whole schedule).
    step: usize,
    /// Where a run that continues a schedule warms up again: its first step, and how many.
    rewarm: Option<(usize, usize)>,
}

impl Schedule {
    /// The schedule of a run with `cfg` and `steps_per_epoch` steps in each epoch, at step
    /// `next` (0-based, counted over the whole run: a resumed run's first step).
    pub fn new(cfg: &TrainConfig, steps_per_epoch: usize, next: usize) -> Result<Self> {
        let total = (steps_per_epoch * cfg.schedule_len()).max(1);
        let warm = warm_up_steps(steps_per_epoch, total);
        // Step k of the warm-up takes (k + 1) / warm of the peak, its last the peak itself.
        let warm_up = if warm > 1 {
            LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(cfg.lr / warm as f64, cfg.lr, warm - 1))
        } else {
            LrSchedulerConfig::Constant(cfg.lr)
        };
        let decay = CosineAnnealingLrSchedulerConfig::new(cfg.lr, (total - warm).max(1)).with_min_lr(0.02 * cfg.lr);
        let mut scheduler =
            SequentialLrSchedulerConfig::new(vec![warm_up, LrSchedulerConfig::Cosine(decay)], vec![warm])
                .init()
                .map_err(|e| anyhow::anyhow!("learning-rate schedule (--lr {}): {e}", cfg.lr))?;
        for _ in 0..next {
            scheduler.step();
        }
        let rewarm = (cfg.schedule_done > 0).then_some((steps_per_epoch * cfg.schedule_done, warm));
        Ok(Schedule { scheduler, step: next, rewarm })
    }

    /// The rate of the next step.
    pub fn next_rate(&mut self) -> f64 {
        let rate = self.scheduler.step().base();
        let step = self.step;
        self.step += 1;
        match self.rewarm {
            // Step k of the re-warm-up takes (k + 1) / warm of the schedule's rate there.
            Some((first, warm)) if (first..first + warm).contains(&step) => {
                rate * (step - first + 1) as f64 / warm as f64
            }
            _ => rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_to_the_peak_then_decays_to_two_percent() {
        let cfg = TrainConfig { epochs: 10, lr: 1e-3, ..TrainConfig::default() };
        let mut schedule = Schedule::new(&cfg, 100, 0).unwrap();
        let lr: Vec<f64> = (0..1000).map(|_| schedule.next_rate()).collect();
        assert!((lr[0] - 1e-5).abs() < 1e-12, "the first step takes 1/warm of the peak");
        assert!((lr[50] - 5.1e-4).abs() < 1e-12, "linear: {}", lr[50]);
        assert!((lr[99] - 1e-3).abs() < 1e-12, "the last warm-up step is the peak");
        assert!(lr[100] <= 1e-3 && lr[101] < 1e-3 && lr[101] > 0.999e-3, "decay starts right after");
        assert!((lr[999] - 2e-5).abs() < 1e-8, "the last step is 2 % of the peak: {}", lr[999]);
        assert!((100..1000).all(|s| lr[s] <= lr[s - 1]), "no rise after the warm-up");
        // A run resumed at step 345 goes on with the rates an uninterrupted one takes.
        let mut resumed = Schedule::new(&cfg, 100, 345).unwrap();
        assert!((345..360).all(|s| resumed.next_rate() == lr[s]));
    }

    /// A 10-epoch schedule cut into runs of 4 and 6 epochs: the second takes the rates of the
    /// uninterrupted schedule's last six epochs, except over its first epoch, where it warms up
    /// to them again.
    #[test]
    fn a_later_part_of_a_schedule_takes_its_rates_after_warming_up_again() {
        let whole = TrainConfig { epochs: 10, lr: 1e-3, ..TrainConfig::default() };
        let mut uninterrupted = Schedule::new(&whole, 100, 0).unwrap();
        let lr: Vec<f64> = (0..1000).map(|_| uninterrupted.next_rate()).collect();

        let first = TrainConfig { epochs: 4, schedule_epochs: Some(10), ..whole.clone() };
        let mut part = Schedule::new(&first, 100, 0).unwrap();
        assert!((0..400).all(|s| part.next_rate() == lr[s]), "the first part is the schedule's start");

        let second = TrainConfig {
            epochs: 6,
            schedule_epochs: Some(10),
            schedule_done: 4,
            init: Some("part-1".into()),
            keep_head: true,
            ..whole.clone()
        };
        second.validate().unwrap();
        let mut part = Schedule::new(&second, 100, 400).unwrap();
        let rates: Vec<f64> = (400..1000).map(|_| part.next_rate()).collect();
        assert!((rates[0] - lr[400] / 100.0).abs() < 1e-15, "warms up from a hundredth: {}", rates[0]);
        assert!((rates[49] - lr[449] / 2.0).abs() < 1e-15, "halfway: {}", rates[49]);
        assert!((1..100).all(|k| rates[k] > rates[k - 1]), "rising over the re-warm-up");
        assert!((99..600).all(|k| rates[k] == lr[400 + k]), "then the uninterrupted schedule's rates");
        // The second part resumed mid-way is warm already.
        let mut resumed = Schedule::new(&second, 100, 650).unwrap();
        assert!((650..660).all(|s| resumed.next_rate() == lr[s]));
    }

    #[test]
    fn a_part_that_does_not_fit_its_schedule_is_refused() {
        let cfg = |epochs, schedule_epochs, schedule_done, init: Option<&str>| TrainConfig {
            epochs,
            schedule_epochs,
            schedule_done,
            keep_head: init.is_some(),
            init: init.map(String::from),
            ..TrainConfig::default()
        };
        let refused = |c: TrainConfig, flag: &str| {
            let e = c.validate().expect_err(flag).to_string();
            assert!(e.contains(flag), "{e}");
        };
        refused(cfg(30, Some(50), 25, Some("m")), "--schedule-epochs 50 is shorter");
        refused(cfg(25, Some(20), 0, None), "--schedule-epochs 20 is shorter");
        refused(cfg(25, Some(50), 25, None), "--init DIR --keep-head");
        cfg(25, Some(50), 0, None).validate().unwrap();
        cfg(25, Some(50), 25, Some("m")).validate().unwrap();
        assert_eq!(cfg(25, None, 25, Some("m")).schedule_len(), 50);
    }

    #[test]
    fn a_one_step_warm_up_starts_at_the_peak() {
        let cfg = TrainConfig { epochs: 2, lr: 1e-3, ..TrainConfig::default() };
        let mut schedule = Schedule::new(&cfg, 5, 0).unwrap();
        assert_eq!(schedule.next_rate(), 1e-3);
        assert_eq!(schedule.next_rate(), 1e-3, "the cosine starts at the peak too");
        assert!(schedule.next_rate() < 1e-3);
    }
}
