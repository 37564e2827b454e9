//! The learning-rate schedule: a linear warm-up, then cosine decay to 2 % of the peak, built
//! from burn's schedulers (linear, cosine annealing, run one after the other).
//!
//! A resumed run rebuilds it and steps it to the run's next step, so it takes the rate an
//! uninterrupted run takes there, with nothing saved beside the optimizer.

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
pub struct Schedule(ModuleLrScheduler);

impl Schedule {
    /// The schedule of a run with `cfg` and `steps_per_epoch` steps in each epoch, at step
    /// `next` (0-based, counted over the whole run: a resumed run's first step).
    pub fn new(cfg: &TrainConfig, steps_per_epoch: usize, next: usize) -> Result<Self> {
        let total = (steps_per_epoch * cfg.epochs).max(1);
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
        Ok(Schedule(scheduler))
    }

    /// The rate of the next step.
    pub fn next_rate(&mut self) -> f64 {
        self.0.step().base()
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

    #[test]
    fn a_one_step_warm_up_starts_at_the_peak() {
        let cfg = TrainConfig { epochs: 2, lr: 1e-3, ..TrainConfig::default() };
        let mut schedule = Schedule::new(&cfg, 5, 0).unwrap();
        assert_eq!(schedule.next_rate(), 1e-3);
        assert_eq!(schedule.next_rate(), 1e-3, "the cosine starts at the peak too");
        assert!(schedule.next_rate() < 1e-3);
    }
}
