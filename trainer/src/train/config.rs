//! Training settings: every hyper-parameter of a run, declared once (its command-line flag, its
//! default, its meaning), saved with the run's checkpoints and its model's manifest.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use mien::classify::ExpressionNetConfig;

/// Training hyper-parameters (all of them: a run is reproducible from these and the data).
///
/// Each field is declared once: its flag and default for `train`, `cv` and `tune` (clap), its
/// form in saved runs and manifests (serde), and the `reproduce` line the trainer writes
/// ([`TrainConfig::to_args`], which reads the flags back from this declaration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, clap::Args)]
pub struct TrainConfig {
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW; a linear warm-up, then cosine decay to 2 % of it).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(skip = 1e-4)]
    pub weight_decay: f64,
    /// The network's width (channels relative to width 1; the shipped model's is 1.25). With
    /// --init, the width of the model it starts from.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// The network's layer layout: 2 or 1, the first shipped network's. With --init, the layout
    /// of the model it starts from. (Configs saved before there was a second one are layout 1.)
    #[arg(long, default_value_t = 2)]
    #[serde(default = "mien::classify::first_layout")]
    pub layout: u32,
    #[arg(long, default_value_t = 0.3)]
    pub dropout: f64,
    /// Augmentation strength, 0 (none) to 1 (the full ranges: flip, rotation, scale, shift,
    /// brightness, contrast).
    #[arg(long, default_value_t = 1.0)]
    pub augment: f32,
    /// Label smoothing of the cross-entropy target, 0 to 1.
    #[arg(long, default_value_t = 0.05)]
    pub label_smoothing: f32,
    /// Weight classes by inverse frequency; --no-class-weights turns it off (better plain
    /// accuracy on imbalanced data such as FER2013, worse recall on its rare classes).
    #[arg(long = "no-class-weights", action = clap::ArgAction::SetFalse)]
    pub class_weights: bool,
    /// Stop after this many epochs without a better validation accuracy (0 = never).
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Seeds the validation split, the initial weights, the batch order and the augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(skip = 48u32)]
    pub input_size: u32,
    #[arg(skip = 0.5f32)]
    pub mean: f32,
    #[arg(skip = 0.25f32)]
    pub std: f32,
    /// Fine-tune: start from the trained layers of this model folder (e.g. assets/model) with a
    /// fresh classification head, instead of random weights.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// With --init, keep its classification head too (the run's labels must be its labels, in
    /// its order): the network goes on from what it knows, on other inputs (--app-crops), instead
    /// of learning its classes again.
    #[arg(long, requires = "init")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_head: bool,
    /// Train and validate on the crops the app cuts instead of the dataset's: each image,
    /// upscaled into a larger frame, is found by the app's detector and cut with the crop
    /// convention of the --init model (else the shipped model's), as `crop-check` measures.
    /// Validation then scores what the app delivers. The crops are cached (`$MIEN_CACHE`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub app_crops: bool,
    /// The crop convention --app-crops cut with, resolved when the run starts and saved with it,
    /// so that a resumed run, `evaluate --validation` and the model's manifest crop alike.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_crop: Option<mien::align::CropConfig>,
    /// A labels-override CSV (`id,label` lines, ids as the trainer names images, e.g.
    /// `S005/001/S005_001_00000011.png`): labels that replace the dataset's own, as a study
    /// labels by hand the images its dataset leaves unlabelled or labels wrong.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Train on FERPlus's labels instead of FER2013's.
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferplus: Option<crate::ferplus::FerPlusLabels>,
    /// Keep the model after the last epoch instead of the epoch with the best validation
    /// accuracy (needs --patience 0). The validation accuracy is still measured and recorded,
    /// but picks nothing: on small datasets a handful of validation subjects picks an epoch more
    /// by chance than by merit.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_epoch: bool,
    /// No validation split: its subjects train too (needs --patience 0). Nothing is then picked
    /// by validation (the last epoch's model is kept), so this is for settings already chosen,
    /// such as the final model of a tuned protocol or cross-validation's folds.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_validation: bool,
    /// Knowledge distillation: also learn the soft predictions of trained teacher models.
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
    /// Threads each training step is split over, each with its share of the batch (saved with
    /// the run: --resume needs the same). 2 trains about a quarter faster on a 2-core CPU.
    ///
    /// On the CPU, one training step's tensor ops leave the cores idle about a third of the time
    /// (ops too small to parallelise, and the gaps between ops). With `lanes` = n the batch is
    /// cut into n parts, each run forward and backward on its own thread with its own fork of the
    /// network (fresh autodiff leaves, so the parts' graphs never merge and wait on one lock), and
    /// the parts fill each other's gaps. The batch's gradient is the sum of the parts' (each
    /// part's loss weighted by its share of the images), as for the whole batch, except that batch
    /// norm normalises each part by its own statistics ("ghost batches") and the running
    /// statistics follow the parts' mean. Everything random (augmentation, dropout masks) is
    /// drawn on the main thread in a fixed order, so a seeded run gives the same numbers every
    /// time, resumed or not. It is a training setting, not the machine's core count: the same
    /// command trains the same network everywhere. Configs saved before there was a choice
    /// trained with one.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "one_lane", skip_serializing_if = "is_one_lane")]
    pub lanes: usize,
    /// The length in epochs of the learning-rate schedule this run is a part of (default: all
    /// of it, --schedule-done plus --epochs). A schedule longer than one run may last is cut
    /// into runs that each train --epochs of it, every run after the first starting from the
    /// model folder of the one before (--init DIR --keep-head --schedule-done N), so that a long
    /// cosine schedule, not a chain of short restarts, is what the runs together train.
    #[arg(long, value_name = "EPOCHS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_epochs: Option<usize>,
    /// Epochs of the schedule that earlier runs trained (the --init model's). This run goes on
    /// with the epochs after them: their learning rates and their batch order, as one
    /// uninterrupted run takes them, numbered on from N. The optimizer's moments start afresh,
    /// so the rate is warmed up again over the run's first epoch (or tenth of the schedule).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "keep_head")]
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schedule_done: usize,
}

/// Knowledge distillation (Hinton et al., 2015): the student also matches a larger teacher's
/// probabilities, softened by a temperature, on every augmented training batch. How a network
/// small enough for the browser's time budget can learn what only a wider one finds on its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, clap::Args)]
#[group(requires = "distill.teachers")]
pub struct Distill {
    /// A teacher: a trained model folder (manifest.json + classifier.safetensors, any width)
    /// with the same labels, input size and normalisation. Given more than once, the target is
    /// the mean of their softened probabilities: an ensemble's, which is right more often than
    /// any of its members and costs the student nothing at inference. (Runs saved with one
    /// teacher wrote it as `teacher`.)
    #[arg(long = "teacher", id = "distill.teachers", value_name = "DIR", required = false)]
    #[serde(alias = "teacher", deserialize_with = "one_or_more")]
    pub teachers: Vec<String>,
    /// Share of the loss that is distillation, 0 < w ≤ 1; the rest is the usual cross-entropy.
    #[arg(long = "distill-weight", id = "distill.weight", value_name = "W", default_value_t = 0.7)]
    pub weight: f32,
    /// Softmax temperature of both networks in the distillation term (the term is scaled by T²,
    /// so its gradients keep their size as T changes).
    #[arg(long = "distill-temperature", id = "distill.temperature", value_name = "T", default_value_t = 4.0)]
    pub temperature: f32,
    /// With --app-crops: the teachers see each image's dataset crop (what they learnt on), the
    /// student the app's crop of the same image, both under the same augmentation. The student
    /// then learns to answer from the app's crop what the teachers answer from the crop they
    /// know, instead of copying the teachers' guesses on crops they never saw.
    #[arg(long = "teacher-sees-dataset-crops", id = "distill.dataset_crops")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dataset_crops: bool,
}

/// A list of teacher folders, or the single folder configs saved before there could be several.
fn one_or_more<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    Ok(match OneOrMore::deserialize(d)? {
        OneOrMore::One(t) => vec![t],
        OneOrMore::More(t) => t,
    })
}

impl TrainConfig {
    /// The options that give this configuration on the command line of `train`, `cv` or
    /// `tune`: those that differ from their defaults, in the order they are declared. Read from
    /// the flags' declaration above, so a new setting needs no code here.
    pub fn to_args(&self) -> String {
        use clap::{ArgAction, Args};
        let cmd = TrainConfig::augment_args(clap::Command::new("train"));
        // Setting by argument id: a nested setting's id is its path (`distill.teachers`).
        let mut values = serde_json::Map::new();
        flatten("", serde_json::to_value(self).unwrap_or_default(), &mut values);
        // An f32 setting reaches JSON widened to f64 (0.05 as 0.05000000074505806): written and
        // compared as the f32 it is.
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if (x as f32) as f64 == x {
                    (x as f32).to_string()
                } else {
                    x.to_string()
                }
            }
            other => other.to_string(),
        };
        let same = |a: &str, b: &str| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x == y || (x as f32 == y as f32 && (x as f32) as f64 == x),
            _ => a == b,
        };
        let mut out = String::new();
        for arg in cmd.get_arguments() {
            let (Some(long), Some(value)) = (arg.get_long(), values.get(arg.get_id().as_str())) else { continue };
            let default = arg.get_default_values().first().map(|d| d.to_string_lossy().into_owned());
            match (arg.get_action(), value) {
                (ArgAction::SetTrue, serde_json::Value::Bool(true))
                | (ArgAction::SetFalse, serde_json::Value::Bool(false)) => out += &format!(" --{long}"),
                (ArgAction::SetTrue | ArgAction::SetFalse, _) => {}
                (_, serde_json::Value::Array(items)) => {
                    items.iter().for_each(|v| out += &format!(" --{long} {}", text(v)));
                }
                (_, serde_json::Value::Null) => {}
                (_, v) if default.as_deref().is_some_and(|d| same(&text(v), d)) => {}
                (_, v) => out += &format!(" --{long} {}", text(v)),
            }
        }
        out
    }

    /// A fine-tuning run (`--init DIR`) takes its network's width and layout from the model it
    /// starts from, so `--init assets/model` needs neither flag; `given(id)` says which flags
    /// the command line set (a shape given that differs is refused when the run loads DIR).
    pub fn with_init_shape(mut self, given: impl Fn(&str) -> bool) -> Self {
        let manifest = self.init.as_deref().and_then(|dir| {
            let json = std::fs::read(std::path::Path::new(dir).join("manifest.json")).ok()?;
            serde_json::from_slice::<mien::ModelManifest>(&json).ok()
        });
        if let Some(m) = manifest {
            if !given("width") {
                self.width = m.width;
            }
            if !given("layout") {
                self.layout = m.layout;
            }
        }
        self
    }

    /// The network this configuration trains, with `num_classes` outputs.
    pub fn net_config(&self, num_classes: usize) -> ExpressionNetConfig {
        ExpressionNetConfig::new(num_classes).with_width(self.width).with_dropout(self.dropout).with_layout(self.layout)
    }

    /// Whether a run with `other` held out the same validation images as one with these settings,
    /// on the same dataset: the seed draws the split, over the images that FERPlus's labels (in
    /// their mode) keep.
    pub fn same_validation_split(&self, other: &TrainConfig) -> bool {
        let mode = |c: &TrainConfig| c.ferplus.as_ref().map(|f| f.mode);
        !self.no_validation && !other.no_validation && self.seed == other.seed && mode(self) == mode(other)
    }

    /// The length in epochs of the learning-rate schedule the run trains a part of.
    pub fn schedule_len(&self) -> usize {
        self.schedule_epochs.unwrap_or(self.last_schedule_epoch())
    }

    /// The schedule's epoch after which the run stops (1-based): the last it trains.
    pub fn last_schedule_epoch(&self) -> usize {
        self.schedule_done + self.epochs
    }

    /// Refuses settings that cannot train, naming the flag, before any work starts.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(anyhow::anyhow!(what)) };
        check(self.epochs >= 1, format!("--epochs {} (at least 1)", self.epochs))?;
        check(self.batch_size >= 1, format!("--batch-size {} (at least 1)", self.batch_size))?;
        check(self.lr > 0.0 && self.lr < 1.0, format!("--lr {} (expected between 0 and 1)", self.lr))?;
        check((0.125..=8.0).contains(&self.width), format!("--width {} (expected 0.125–8)", self.width))?;
        check(
            mien::classify::LAYOUTS.contains(&self.layout),
            format!("--layout {} (expected {:?})", self.layout, mien::classify::LAYOUTS),
        )?;
        check((0.0..1.0).contains(&self.dropout), format!("--dropout {} (expected 0 ≤ p < 1)", self.dropout))?;
        check((0.0..=1.0).contains(&self.augment), format!("--augment {} (expected 0–1)", self.augment))?;
        check((1..=8).contains(&self.lanes), format!("--lanes {} (expected 1–8)", self.lanes))?;
        check(
            (0.0..1.0).contains(&self.label_smoothing),
            format!("--label-smoothing {} (expected 0 ≤ a < 1)", self.label_smoothing),
        )?;
        check(
            !(self.last_epoch && self.patience > 0),
            format!(
                "--last-epoch with --patience {}: early stopping picks by validation (use --patience 0)",
                self.patience
            ),
        )?;
        check(
            !(self.no_validation && self.patience > 0),
            format!("--no-validation with --patience {}: nothing to stop early on (use --patience 0)", self.patience),
        )?;
        check(
            self.schedule_done == 0 || (self.init.is_some() && self.keep_head),
            format!(
                "--schedule-done {}: the run goes on from a model of the schedule's earlier epochs (give it with \
                 --init DIR --keep-head)",
                self.schedule_done
            ),
        )?;
        check(
            self.schedule_len() >= self.last_schedule_epoch(),
            format!(
                "--schedule-epochs {} is shorter than --schedule-done {} plus --epochs {}",
                self.schedule_len(),
                self.schedule_done,
                self.epochs
            ),
        )?;
        if let Some(d) = &self.distill {
            check(!d.teachers.is_empty(), "--teacher: distillation needs at least one teacher".into())?;
            check(d.weight > 0.0 && d.weight <= 1.0, format!("--distill-weight {} (expected 0 < w ≤ 1)", d.weight))?;
            check(
                !d.dataset_crops || self.app_crops,
                "--teacher-sees-dataset-crops without --app-crops: the student sees the dataset crops too".into(),
            )?;
            check(
                d.temperature > 0.0 && d.temperature <= 100.0,
                format!("--distill-temperature {} (expected 0 < T ≤ 100)", d.temperature),
            )?;
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    /// The defaults declared on the flags: a run given no option trains with these.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let cmd = TrainConfig::augment_args(clap::Command::new("train"));
        let matches = cmd.get_matches_from(["train"]);
        TrainConfig::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

/// Puts the leaves of `value` in `out`, keyed by their path (`distill.weight`).
fn flatten(prefix: &str, value: serde_json::Value, out: &mut serde_json::Map<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (k, v) in fields {
                let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf);
        }
    }
}

fn one_lane() -> usize {
    1
}

fn is_one_lane(n: &usize) -> bool {
    *n == 1
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    fn parse(args: &[&str]) -> Result<TrainConfig, clap::Error> {
        let cmd = TrainConfig::augment_args(clap::Command::new("train").no_binary_name(true));
        TrainConfig::from_arg_matches(&cmd.try_get_matches_from(args)?)
    }

    #[test]
    fn defaults_are_the_declared_ones() {
        let c = TrainConfig::default();
        assert_eq!((c.epochs, c.batch_size, c.lr, c.layout, c.seed, c.lanes), (40, 64, 2e-3, 2, 42, 1));
        assert_eq!((c.weight_decay, c.input_size, c.mean, c.std), (1e-4, 48, 0.5, 0.25));
        assert!(c.class_weights && !c.last_epoch && !c.no_validation);
        assert_eq!((&c.init, &c.labels, &c.ferplus, &c.distill), (&None, &None, &None, &None));
        assert_eq!(c.to_args(), "", "the defaults need no option");
    }

    #[test]
    fn reproduce_options_parse_back_to_the_same_settings() {
        let given = [
            "--epochs",
            "3",
            "--width",
            "1.25",
            "--no-class-weights",
            "--patience",
            "0",
            "--last-epoch",
            "--labels",
            "overrides.csv",
            "--ferplus",
            "fp",
            "--ferplus-mode",
            "majority",
            "--teacher",
            "a",
            "--teacher",
            "b",
            "--distill-temperature",
            "2",
            "--lanes",
            "2",
        ];
        let c = parse(&given).unwrap();
        assert!(!c.class_weights);
        assert_eq!(c.ferplus.as_ref().map(|f| f.dir.as_str()), Some("fp"));
        let d = c.distill.as_ref().unwrap();
        assert_eq!((d.teachers.clone(), d.weight, d.temperature), (vec!["a".to_string(), "b".into()], 0.7, 2.0));
        let args = c.to_args();
        assert!(!args.contains("--distill-weight") && !args.contains("--batch-size"), "{args}");
        let again = parse(&args.split_whitespace().collect::<Vec<_>>()).unwrap();
        assert_eq!(again, c, "{args}");
        // And through the JSON a run saves.
        let saved: TrainConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(saved, c);
    }

    #[test]
    fn distillation_and_ferplus_options_need_their_folder() {
        assert_eq!(parse(&["--epochs", "2"]).unwrap().distill, None);
        let e = parse(&["--distill-weight", "0.5"]).unwrap_err().to_string();
        assert!(e.contains("--teacher"), "{e}");
        let e = parse(&["--ferplus-mode", "majority"]).unwrap_err().to_string();
        assert!(e.contains("--ferplus"), "{e}");
    }
}
