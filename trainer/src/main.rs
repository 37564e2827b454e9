//! `mien-trainer`: the native command line over the core crate — face detection now; datasets,
//! training and evaluation as they land.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mien_trainer::compute::DeviceChoice;
use mien_trainer::ferplus::{FerPlusLabels, FerPlusMode};
use mien_trainer::train::{Distill, TrainConfig};
use mien_trainer::{bench, commands, compute, cropcheck, detect, tune};

#[derive(Parser)]
#[command(name = "mien-trainer", version, about = "mien's native tools: detect faces, benchmark, train and evaluate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where train, cv and tune run: auto (a hardware GPU through wgpu if there is one, else
    /// the CPU), cpu, or gpu (wgpu's adapter, a software one too).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    device: DeviceChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Detect faces (box, score, five landmarks) in images.
    Detect {
        /// Image files (JPEG, PNG, GIF, WebP, BMP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Smallest face side to search for, in pixels.
        #[arg(long, default_value_t = 20.0)]
        min_face: f32,
        /// One JSON object per line and image instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Subject-independent k-fold cross-validation (folds grouped by subject id).
    Cv {
        /// Dataset folder or CSV, in any supported layout.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 10)]
        folds: usize,
        /// JSON report to write.
        #[arg(long, default_value = "reports/cv.json")]
        report: PathBuf,
        /// Reuse the folds already in --report from an interrupted run with the same settings.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Train a model and write it (classifier.safetensors + manifest.json) to a folder.
    Train {
        #[arg(long)]
        data: PathBuf,
        /// Model folder to write; checkpoints go in its checkpoints/ subfolder.
        #[arg(long)]
        out: PathBuf,
        /// Continue from the last checkpoint in --out.
        #[arg(long)]
        resume: bool,
        /// Keep every epoch's weights in the checkpoints folder (1.3 MB each at width 1.25), for
        /// `average`.
        #[arg(long)]
        keep_epochs: bool,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Write a model folder with the mean of a run's weights over its last epochs (stochastic
    /// weight averaging; the run must have been trained with --keep-epochs), batch norm measured
    /// again on training batches. Prints the validation accuracy of the mean and of the epochs.
    Average {
        /// The dataset the run trained on (the same training and validation split is rebuilt).
        #[arg(long)]
        data: PathBuf,
        /// The run's checkpoints folder (`<train --out>/checkpoints`).
        #[arg(long)]
        checkpoints: PathBuf,
        /// The epochs to average, first-last (1-based, inclusive), e.g. 51-60.
        #[arg(long, value_parser = parse_epochs)]
        epochs: (usize, usize),
        /// Training batches that measure batch norm's statistics again.
        #[arg(long, default_value_t = 200)]
        bn_batches: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a model folder from the best checkpoint of a training run (finished or not).
    Export {
        /// The dataset the run trained on (for its label list and composition).
        #[arg(long)]
        data: PathBuf,
        /// The run's checkpoints folder (`<train --out>/checkpoints`).
        #[arg(long)]
        checkpoints: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Remove the epochs a run kept with --keep-epochs, leaving what --resume and export need
    /// (the last checkpoint and the best epoch's weights).
    Prune {
        /// The run's checkpoints folder (`<train --out>/checkpoints`).
        #[arg(long)]
        checkpoints: PathBuf,
    },
    /// Compact a safetensors weight file for download: large tensors to int8 with per-channel
    /// scales, the other weights to f16 (how the app ships its weights: a third of the f32 size).
    /// The app, the CLI and the trainer load either form.
    Quantize {
        /// f32 safetensors file (for example assets/mtcnn/reference/onet.safetensors).
        input: PathBuf,
        /// Where to write the compact file.
        output: PathBuf,
    },
    /// Evaluate a saved model on a dataset (its test split, where it has one).
    Evaluate {
        /// Model folder (classifier.safetensors + manifest.json); default: the model the web app
        /// ships. With --validation it may be given more than once: the mean of the models'
        /// probabilities is scored (an ensemble, such as a distillation run's teachers).
        #[arg(long)]
        model: Vec<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "reports/evaluate.json")]
        report: PathBuf,
        /// Also record the accuracy in the model's manifest (its model card).
        #[arg(long)]
        record: bool,
        /// Score on the validation split the model's own training run held out (rebuilt from its
        /// manifest's train_config), not the test split: for choosing between models, so that
        /// PublicTest never chooses.
        #[arg(long, conflicts_with = "record")]
        validation: bool,
        #[command(flatten)]
        labels: FerPlusArgs,
    },
    /// Random search over training settings, scored on subject-grouped validation folds of the
    /// training data only; writes a leaderboard (resumable with the same seed).
    Tune {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 12)]
        trials: usize,
        /// Validation folds per trial.
        #[arg(long, default_value_t = 3)]
        folds: usize,
        #[arg(long, default_value = "reports/tune.json")]
        leaderboard: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Check that detection + aligned crop gives the model what dataset crops gave it (dataset
    /// crops pasted into larger frames); --tune picks the crop margin on training images first.
    CropCheck {
        /// Model folder; default: the model the web app ships.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        /// Images to use (a seeded sample).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Choose the margin on the training split and write it into the model's manifest.
        #[arg(long)]
        tune: bool,
        /// Also move the faces of these photos (a folder) into larger frames and compare.
        #[arg(long)]
        photos: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value = "reports/crop_check.json")]
        report: PathBuf,
    },
    /// Time face detection on a 640×480 frame with one face (median of N runs after warm-up).
    BenchDetect {
        /// Runs per setting.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// The frame to time (default: the repository's tests/fixtures/bench/astronaut_640x480.jpg).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Also time the expression network alone at these widths (e.g. 1,1.5,2): what a wider
        /// model would cost per face.
        #[arg(long, value_delimiter = ',')]
        widths: Vec<f64>,
    },
}

/// Training allocates and frees the same large tensors (activations, gradients) at every step.
/// glibc's malloc hands blocks above its mmap threshold straight back to the kernel and trims the
/// heap as soon as its top is free, so each step paid for fresh zeroed pages again: measured on
/// this 2-core machine (one epoch over 2,483 FER2013 images, the same settings through
/// `GLIBC_TUNABLES`), system time fell from 11.3 s to 0.6 s and throughput rose from 105 to 173
/// images/s when freed memory stays with the process; this function gave 0.36 s of system time.
/// The numbers computed are the same; only where the memory comes from changes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes the allocator's tuning; it is called before any thread starts.
    // 32 MiB is the largest mmap threshold glibc accepts on 64-bit (a larger one is refused and
    // would leave the default, 128 KiB, fixed: setting any of these turns off its adaptation).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Cv { .. } | Command::Train { .. } | Command::Tune { .. } | Command::Average { .. }
    ) {
        match compute::select(cli.device) {
            Ok(c) => eprintln!("device: {}", c.description),
            Err(e) => {
                eprintln!("error: --device {}: {e}", format!("{:?}", cli.device).to_lowercase());
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match cli.command {
        Command::Detect { images, min_face, json } => detect::run(&images, min_face, json),
        Command::CropCheck { model, data, limit, tune, photos, seed, report } => {
            let model = model.unwrap_or_else(commands::shipped_model_dir);
            cropcheck::run(&model, &data, limit, tune, photos.as_deref(), seed, &report).map(|_| ExitCode::SUCCESS)
        }
        Command::BenchDetect { runs, image, widths } => bench::run(runs, image, &widths),
        Command::Cv { data, folds, report, resume, train } => {
            commands::cv(&data, folds, &train.config(seed_of(&train)), &report, resume).map(|_| ExitCode::SUCCESS)
        }
        Command::Train { data, out, resume, keep_epochs, train } => {
            commands::train_model(&data, &train.config(seed_of(&train)), &out, resume, keep_epochs)
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Average { data, checkpoints, epochs, bn_batches, out } => {
            commands::average_model(&data, &checkpoints, epochs, bn_batches, &out).map(|_| ExitCode::SUCCESS)
        }
        Command::Tune { data, trials, folds, leaderboard, train } => {
            tune::run(&data, trials, folds, &train.config(seed_of(&train)), &leaderboard).map(|_| ExitCode::SUCCESS)
        }
        Command::Export { data, checkpoints, out } => {
            commands::export_model(&data, &checkpoints, &out).map(|_| ExitCode::SUCCESS)
        }
        Command::Prune { checkpoints } => mien_trainer::train::prune_checkpoints(&checkpoints).map(|n| {
            eprintln!("removed {n} files from {}", checkpoints.display());
            ExitCode::SUCCESS
        }),
        Command::Quantize { input, output } => commands::quantize_file(&input, &output).map(|_| ExitCode::SUCCESS),
        // clap refuses --record beside --validation: a model card's metrics are test figures.
        Command::Evaluate { model, data, report, validation: true, labels, .. } => {
            commands::evaluate_on_validation(&model, &data, &report, labels.labels().is_some())
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Evaluate { model, data, report, record, validation: false, labels } => match model.as_slice() {
            [] | [_] => commands::evaluate_model(
                model.first().map(PathBuf::as_path),
                &data,
                &report,
                record,
                labels.labels().as_ref(),
            )
            .map(|_| ExitCode::SUCCESS),
            // A test split chooses nothing: an ensemble is a candidate (of teachers), not a model
            // the app can load.
            _ => Err(anyhow::anyhow!(
                "--model is given {} times: an ensemble of models is scored on validation only (add --validation)",
                model.len()
            )),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `A-B` → (A, B): a range of epochs.
fn parse_epochs(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a range of epochs such as 51-60"))?;
    let n = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("{x:?} in {s:?} is not an epoch number"));
    let (a, b) = (n(a)?, n(b)?);
    if a == 0 || a > b {
        return Err(format!("{s:?}: epochs count from 1, the first no later than the last"));
    }
    Ok((a, b))
}

/// Training hyper-parameters on the command line (defaults: [`TrainConfig::default`]).
#[derive(Args, Debug)]
struct TrainArgs {
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// The network's width (channels relative to width 1; the shipped model's is 1.25). With
    /// --init, the width of the model it starts from.
    #[arg(long)]
    width: Option<f64>,
    /// The network's layer layout: 2 (default) or 1, the first shipped network's. With --init,
    /// the layout of the model it starts from.
    #[arg(long)]
    layout: Option<u32>,
    #[arg(long)]
    dropout: Option<f64>,
    /// Augmentation strength, 0 to 1.
    #[arg(long)]
    augment: Option<f32>,
    #[arg(long)]
    patience: Option<usize>,
    /// Label smoothing of the cross-entropy target, 0 to 1.
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Do not weight classes by inverse frequency (better plain accuracy on imbalanced data such
    /// as FER2013, worse recall on its rare classes).
    #[arg(long)]
    no_class_weights: bool,
    /// Fine-tune: start from the trained layers of this model folder (e.g. assets/model, the
    /// FER2013 model) with a fresh classification head.
    #[arg(long)]
    init: Option<PathBuf>,
    #[command(flatten)]
    labels: FerPlusArgs,
    /// Keep the model after the last epoch, not the one with the best validation accuracy
    /// (needs --patience 0).
    #[arg(long)]
    last_epoch: bool,
    /// No validation split: its subjects train too, and the last epoch's model is kept (needs
    /// --patience 0). For settings already chosen.
    #[arg(long)]
    no_validation: bool,
    /// Knowledge distillation: also learn this trained model's softened predictions (a model
    /// folder with the same labels, input and normalisation; any width). Given more than once,
    /// the mean of the teachers' predictions (an ensemble's).
    #[arg(long)]
    teacher: Vec<PathBuf>,
    /// Share of the loss that is distillation (with --teacher).
    #[arg(long, default_value_t = 0.7, requires = "teacher")]
    distill_weight: f32,
    /// Softmax temperature of the distillation term (with --teacher).
    #[arg(long, default_value_t = 4.0, requires = "teacher")]
    distill_temperature: f32,
    /// Threads each training step is split over, each with its share of the batch (batch norm
    /// then sees each share's statistics). 2 trains about a quarter faster on a 2-core CPU,
    /// whose cores one thread leaves idle a third of the time; 1 (default) is how every run
    /// before it trained. Saved with the run: --resume needs the same.
    #[arg(long)]
    lanes: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// FERPlus labels for FER2013 (instead of its original labels).
#[derive(Args, Debug)]
struct FerPlusArgs {
    /// Use FERPlus's ten-annotator votes as labels: the folder with fer2013new.csv
    /// (e.g. ../shared/data/ferplus). A FER2013 folder also needs its fer2013_row_alignment.csv.
    #[arg(long)]
    ferplus: Option<PathBuf>,
    /// soft: train on the vote shares; majority: on the majority emotion (images without one are dropped).
    #[arg(long, value_enum, default_value = "soft", requires = "ferplus")]
    ferplus_mode: FerPlusMode,
}

impl FerPlusArgs {
    fn labels(&self) -> Option<FerPlusLabels> {
        self.ferplus.as_ref().map(|d| FerPlusLabels { dir: d.display().to_string(), mode: self.ferplus_mode })
    }
}

/// The manifest of the model folder `dir`, if it can be read (a missing or broken one is
/// reported by name when the run loads it). A fine-tuning run takes its network's shape from it,
/// so `--init assets/model` needs no `--width` or `--layout` to match the shipped model.
fn manifest_of(dir: &std::path::Path) -> Option<mien::ModelManifest> {
    let json = std::fs::read(dir.join("manifest.json")).ok()?;
    serde_json::from_slice::<mien::ModelManifest>(&json).ok()
}

fn seed_of(a: &TrainArgs) -> u64 {
    a.seed
}

impl TrainArgs {
    fn config(&self, seed: u64) -> TrainConfig {
        let d = TrainConfig::default();
        let init = self.init.as_deref().and_then(manifest_of);
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            width: self.width.or_else(|| init.as_ref().map(|m| m.width)).unwrap_or(d.width),
            layout: self.layout.or_else(|| init.as_ref().map(|m| m.layout)).unwrap_or(d.layout),
            dropout: self.dropout.unwrap_or(d.dropout),
            augment: self.augment.unwrap_or(d.augment),
            patience: self.patience.unwrap_or(d.patience),
            label_smoothing: self.label_smoothing.unwrap_or(d.label_smoothing),
            class_weights: d.class_weights && !self.no_class_weights,
            init: self.init.as_ref().map(|p| p.display().to_string()),
            ferplus: self.labels.labels(),
            last_epoch: self.last_epoch,
            no_validation: self.no_validation,
            lanes: self.lanes.unwrap_or(d.lanes),
            distill: (!self.teacher.is_empty()).then(|| Distill {
                teachers: self.teacher.iter().map(|t| t.display().to_string()).collect(),
                weight: self.distill_weight,
                temperature: self.distill_temperature,
            }),
            seed,
            ..d
        }
    }
}
