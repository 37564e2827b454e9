//! What a run says while it trains: a progress bar within each epoch (on a terminal only) and one
//! plain line per finished epoch, which logs and scripts read.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::EpochStats;

/// The progress of one epoch. Silent when the run is quiet; the bar draws only where stderr is a
/// terminal, so a log gets the epoch lines alone.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl EpochProgress {
    /// Starts epoch `epoch` (0-based) of `epochs`, over `images` training images.
    pub fn start(epoch: usize, epochs: usize, images: usize, quiet: bool) -> Self {
        let bar = (!quiet).then(|| {
            let bar = ProgressBar::with_draw_target(Some(images as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos:>6}/{len} {msg} {per_sec:>11} ETA {eta_precise}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(format!("{:>3}/{epochs}", epoch + 1));
            bar
        });
        EpochProgress { bar, epochs }
    }

    /// `seen` images done, with the mean loss and accuracy over them.
    pub fn update(&self, seen: usize, mean_loss: f64, accuracy: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(seen as u64);
            bar.set_message(format!("loss {mean_loss:.3} acc {:5.1}%", 100.0 * accuracy));
        }
    }

    /// Clears the bar and prints the epoch's line.
    pub fn finish(self, stats: &EpochStats) {
        let Some(bar) = self.bar else { return };
        bar.finish_and_clear();
        eprintln!("{}", epoch_line(stats, self.epochs));
    }
}

/// `epoch  12/50: loss 0.812, train acc 70.1%, val acc 64.2%, 160 img/s, 171 s`: the line
/// `scripts/gpu-fit.sh` reads the seconds from.
pub fn epoch_line(stats: &EpochStats, epochs: usize) -> String {
    format!(
        "epoch {:>3}/{}: loss {:.3}, train acc {:.1}%, val acc {}, {:.0} img/s, {:.0} s",
        stats.epoch,
        epochs,
        stats.train_loss,
        100.0 * stats.train_accuracy,
        stats.val_accuracy.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into()),
        stats.images_per_second,
        stats.seconds,
    )
}
