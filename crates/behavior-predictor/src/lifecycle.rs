//! Model lifecycle: which version of each model should serve, and the watcher that swaps
//! a changed one in without restart.
//!
//! The version to serve is the one named in `<root>/<name>/serving` (one line, e.g. `2`)
//! when that file exists and is not empty, else the configured one
//! (`models.intent_version`, `models.repurchase_version`). Every `models.reload_secs` the
//! watcher compares that version and its directory's files (the card's bytes, every
//! file's length and modification time) with what it saw last, starting from what the
//! files were before the serving version was loaded (so that an edit made while the
//! service starts is not taken for the version serving); on a change it loads,
//! validates and warms the version on a blocking thread and swaps it in, so batches and
//! requests in flight finish on the version they took. A version that fails is refused
//! (error log, `behavior_model_refusals_total{model}`) and the serving one stays; it is
//! tried again only after its files or the pointer change again.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use funnel_runtime::Shutdown;

use crate::config::ModelsConfig;
use crate::metrics::Metrics;
use crate::scoring::{ModelRole, Scorer};

/// The pointer file an operator edits to move a model to another version.
pub const SERVING_FILE: &str = "serving";

/// The version of `name` to serve: the pointer file's, else `configured`.
pub fn serving_version(root: &Path, name: &str, configured: &str) -> String {
    match std::fs::read_to_string(root.join(name).join(SERVING_FILE)) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        Ok(_) => configured.to_owned(),
        Err(e) => {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(model = name, error = %e, "unreadable serving pointer; using the configured version");
            }
            configured.to_owned()
        }
    }
}

/// What the watcher compares between polls: the version and the state of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    version: String,
    card: Option<Vec<u8>>,
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

fn fingerprint(root: &Path, name: &str, version: &str) -> Fingerprint {
    let dir = root.join(name).join(version);
    let card = std::fs::read(funnel_model::card_path(root, name, version)).ok();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let meta = entry.metadata().ok()?;
            Some((entry.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    Fingerprint {
        version: version.to_owned(),
        card,
        files,
    }
}

impl Fingerprint {
    /// The version whose files these are.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// One model the watcher looks after.
pub struct Watched {
    pub role: ModelRole,
    pub name: String,
    pub configured_version: String,
}

impl Watched {
    /// The intent and the repurchase model, as `models` names them.
    pub fn both(models: &ModelsConfig) -> [Watched; 2] {
        [
            (ModelRole::Intent, &models.intent, &models.intent_version),
            (
                ModelRole::Repurchase,
                &models.repurchase,
                &models.repurchase_version,
            ),
        ]
        .map(|(role, name, version)| Watched {
            role,
            name: name.clone(),
            configured_version: version.clone(),
        })
    }

    /// The version to serve now and the state of its files; take it before loading them.
    pub fn before_loading(&self, root: &Path) -> Fingerprint {
        let version = serving_version(root, &self.name, &self.configured_version);
        fingerprint(root, &self.name, &version)
    }
}

/// Polls every `every` until `stop`, swapping changed versions in (see the module docs).
/// Each model comes with its fingerprint taken before its serving version was loaded.
pub async fn watch_models(
    root: PathBuf,
    models: Vec<(Watched, Fingerprint)>,
    scorer: Arc<Scorer>,
    every: Duration,
    metrics: Metrics,
    stop: Shutdown,
) {
    let (models, mut seen): (Vec<Watched>, Vec<Fingerprint>) = models.into_iter().unzip();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for (model, seen) in models.iter().zip(seen.iter_mut()) {
            let version = serving_version(&root, &model.name, &model.configured_version);
            let now = fingerprint(&root, &model.name, &version);
            if now == *seen {
                continue;
            }
            *seen = now;
            swap_in(&root, model, &version, &scorer, &metrics).await;
        }
    }
}

async fn swap_in(
    root: &Path,
    model: &Watched,
    version: &str,
    scorer: &Arc<Scorer>,
    metrics: &Metrics,
) {
    let swapped = {
        let (scorer, role, root, name, version) = (
            Arc::clone(scorer),
            model.role,
            root.to_path_buf(),
            model.name.clone(),
            version.to_owned(),
        );
        tokio::task::spawn_blocking(move || scorer.swap(role, &root, &name, &version)).await
    };
    match swapped {
        Ok(Ok(previous)) => {
            metrics.model_swaps(&model.name).inc();
            metrics.model_serving(&model.name, version, Some(&previous.id.version));
            tracing::info!(
                model = %model.name,
                version,
                replaced = %previous.id,
                "model version swapped in"
            );
        }
        Ok(Err(e)) => {
            metrics.model_refusals(&model.name).inc();
            tracing::error!(
                model = %model.name,
                version,
                error = %e,
                serving = %scorer.info(model.role).id,
                "model version refused; the previous version keeps serving"
            );
        }
        Err(e) => {
            metrics.model_refusals(&model.name).inc();
            tracing::error!(model = %model.name, version, error = %e, "model load panicked; the previous version keeps serving");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("bp-lifecycle-{name}-{}", std::process::id()));
        std::fs::create_dir_all(root.join("intent/1")).unwrap();
        root
    }

    #[test]
    fn the_pointer_file_names_the_version_else_the_configured_one_serves() {
        let root = scratch("pointer");
        assert_eq!(serving_version(&root, "intent", "1"), "1");
        std::fs::write(root.join("intent").join(SERVING_FILE), " 2\n").unwrap();
        assert_eq!(serving_version(&root, "intent", "1"), "2");
        std::fs::write(root.join("intent").join(SERVING_FILE), "\n").unwrap();
        assert_eq!(serving_version(&root, "intent", "1"), "1");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_rewritten_card_changes_the_fingerprint() {
        let root = scratch("fingerprint");
        std::fs::write(root.join("intent/1/model.json"), "{}").unwrap();
        let before = fingerprint(&root, "intent", "1");
        assert_eq!(before, fingerprint(&root, "intent", "1"));
        std::fs::write(root.join("intent/1/model.json"), "{ }").unwrap();
        assert_ne!(before, fingerprint(&root, "intent", "1"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
