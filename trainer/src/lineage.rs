//! Where a model comes from: the models a run builds on (`--init`, `--teacher`) and the chain of
//! commands that reproduces it, written into its manifest as `reproduce`.

use std::path::Path;

use anyhow::Result;

use crate::train::{EpochStats, TrainConfig};

/// What a run builds on (its `--init` and `--teacher` model folders), from their manifests: the
/// commands that made them (a fine-tuned or distilled model is only reproducible with them) and
/// the training history of the model it starts from. Read when the run starts and kept beside its
/// checkpoints (`lineage.json`), because those folders may be overwritten before the run is
/// exported: a run that fine-tunes `assets/model` is exported into `assets/model`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Lineage {
    /// The `reproduce` commands of the models the run builds on, each followed by ` && `.
    pub reproduce: String,
    /// The `--init` model's history, epoch by epoch (empty without one).
    pub init_history: Vec<EpochStats>,
    /// Each `--init` or `--teacher` folder as given, beside the folder its `reproduce` commands
    /// write it to (their last `--out`). The run's own command names the second: the folder given
    /// is often `assets/model`, which holds another model once this run's model is shipped there.
    #[serde(default)]
    made_in: Vec<(String, String)>,
}

impl Lineage {
    /// The commands that reproduce a run with `cfg` on `data` into `out`: those of the models it
    /// builds on, then its own, naming them where those commands write them.
    pub fn reproduce(&self, data: &Path, cfg: &TrainConfig, out: &Path) -> String {
        let mut cfg = cfg.clone();
        let made_in = |dir: &mut String| {
            if let Some((_, chain_out)) = self.made_in.iter().find(|(given, _)| given == dir) {
                dir.clone_from(chain_out);
            }
        };
        if let Some(init) = cfg.init.as_mut() {
            made_in(init);
        }
        if let Some(d) = cfg.distill.as_mut() {
            d.teachers.iter_mut().for_each(made_in);
        }
        format!("{}{}", self.reproduce, reproduce_command(data, &cfg, out))
    }
}

/// The model folders a run builds on: its `--init`, then its `--teacher`s.
fn built_on(cfg: &TrainConfig) -> impl Iterator<Item = &String> {
    cfg.init.iter().chain(cfg.distill.iter().flat_map(|d| &d.teachers))
}

/// The folder a chain of `reproduce` commands writes its model to: its last `--out`.
fn chain_output(steps: &str) -> Option<String> {
    let (_, after) = steps.rsplit_once(" --out ")?;
    after.split_whitespace().next().map(str::to_owned)
}

/// The run's [`Lineage`]: `fresh` reads it from the model folders (a new run); otherwise the one
/// kept beside the checkpoints is used where there is one (a resumed run, an export).
pub fn lineage(cfg: &TrainConfig, checkpoints: &Path, fresh: bool) -> Result<Lineage> {
    let kept = checkpoints.join("lineage.json");
    if !fresh {
        if let Some(mut l) = std::fs::read(&kept).ok().and_then(|b| serde_json::from_slice::<Lineage>(&b).ok()) {
            // Kept before `made_in` existed: with one model to build on, its chain is all of it.
            let given: Vec<&String> = built_on(cfg).collect();
            if let ([dir], true, Some(out)) = (given.as_slice(), l.made_in.is_empty(), chain_output(&l.reproduce)) {
                l.made_in.push(((*dir).clone(), out));
            }
            return Ok(l);
        }
    }
    let manifest = |dir: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(Path::new(dir).join("manifest.json")).ok()?).ok()
    };
    let mut lineage = Lineage::default();
    if cfg.init.is_none() && cfg.distill.is_none() {
        // A run from random weights builds on nothing: no file to keep.
        return Ok(lineage);
    }
    for dir in built_on(cfg) {
        if let Some(steps) = manifest(dir).as_ref().and_then(|m| m["info"]["reproduce"].as_str().map(str::to_owned)) {
            if let Some(out) = chain_output(&steps) {
                lineage.made_in.push((dir.clone(), out));
            }
            // Two teachers may share steps (one distilled from the other): each is run once.
            for step in steps.split(" && ") {
                if !lineage.reproduce.split(" && ").any(|done| done == step) {
                    lineage.reproduce += step;
                    lineage.reproduce += " && ";
                }
            }
        }
    }
    if let Some(m) = cfg.init.as_deref().and_then(manifest) {
        lineage.init_history = serde_json::from_value(m["info"]["history"].clone()).unwrap_or_default();
    }
    std::fs::create_dir_all(checkpoints)?;
    crate::fsutil::write_atomic(&kept, &serde_json::to_vec_pretty(&lineage)?)?;
    Ok(lineage)
}

/// How the `reproduce` lines the trainer writes run it: the test build's binary, through xtask
/// (`cargo run -p mien-trainer` would build burn a second time).
pub const TRAINER: &str = "cargo xtask trainer";

/// The command line that reproduces a training run with `cfg` on `data`.
fn reproduce_command(data: &Path, cfg: &TrainConfig, out: &Path) -> String {
    format!("{TRAINER} train --data {} --out {}{}", data.display(), out.display(), cfg.to_args())
}
