//! A loaded model version: its identity, its signature and a pool of sessions.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use ndarray::{Array1, Array2, ArrayView2};

use crate::card::{ModelCard, card_path, sha256_hex};
use crate::error::ModelError;
use crate::golden::GoldenCheck;
use crate::session::ModelSession;
use crate::spec::ModelSpec;
use crate::tensor::{Outputs, TensorInput};

/// Which model and which version of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelId {
    pub name: String,
    pub version: String,
}

impl ModelId {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// What is serving: the model, the file it came from and the checksum of the bytes
/// that were actually loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: ModelId,
    pub sha256: String,
    pub path: PathBuf,
}

/// How to open a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Threads ONNX Runtime may use inside one run. 1 (the default) keeps a run on the
    /// calling thread, so that concurrency comes from the session pool instead.
    pub intra_threads: usize,
    /// Sessions in the pool, i.e. how many runs of this model can proceed at once;
    /// match it to the number of blocking workers that run inference. Default 1.
    pub sessions: usize,
    /// Rows of the zero batch each session runs once at load. Default 1.
    pub warmup_batch: usize,
    /// Lets idle intra-op threads spin for lower latency at the cost of CPU; only
    /// matters with `intra_threads > 1`. Default false.
    pub intra_op_spinning: bool,
    /// A golden check to pass in addition to the card's own.
    pub golden: Option<GoldenCheck>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            sessions: 1,
            warmup_batch: 1,
            intra_op_spinning: false,
            golden: None,
        }
    }
}

impl LoadOptions {
    fn validate(&self) -> Result<(), ModelError> {
        for (name, value) in [
            ("intra_threads", self.intra_threads),
            ("sessions", self.sessions),
            ("warmup_batch", self.warmup_batch),
        ] {
            if value == 0 {
                return Err(ModelError::InvalidOptions {
                    reason: format!("{name} must be at least 1"),
                });
            }
        }
        Ok(())
    }
}

/// A model version that loaded, matched its signature, warmed up and passed its golden
/// checks; shareable across threads (`Arc<Model>`), each run borrowing a free session.
pub struct Model {
    info: ModelInfo,
    spec: Arc<ModelSpec>,
    card: Option<ModelCard>,
    sessions: Box<[Mutex<ModelSession>]>,
    next_session: AtomicUsize,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.info)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model a card describes: the card is validated, the file's sha256 must
    /// match it, and the model must match the card's signature and golden vectors.
    pub fn from_card(card_path: &Path, options: &LoadOptions) -> Result<Self, ModelError> {
        let card = ModelCard::load(card_path)?;
        Self::from_loaded_card(card_path, card, options)
    }

    /// Loads `<models_root>/<name>/<version>/model.json` and its model, as
    /// [`Model::from_card`] does, and checks that the card is for that name and version.
    pub fn from_store(
        models_root: &Path,
        name: &str,
        version: &str,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        let card = ModelCard::load_from_store(models_root, name, version)?;
        Self::from_loaded_card(&card_path(models_root, name, version), card, options)
    }

    /// Loads a model file without a card, against a signature given in code.
    pub fn from_file(
        path: &Path,
        id: ModelId,
        spec: ModelSpec,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        spec.validate().map_err(|reason| ModelError::InvalidSpec {
            path: path.to_path_buf(),
            reason,
        })?;
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::open(path.to_path_buf(), &bytes, id, spec, None, options)
    }

    fn from_loaded_card(
        card_path: &Path,
        card: ModelCard,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        let (path, bytes) = card.read_model(card_path)?;
        let id = ModelId::new(&card.name, &card.version);
        let spec = card.spec();
        Self::open(path, &bytes, id, spec, Some(card), options)
    }

    fn open(
        path: PathBuf,
        bytes: &[u8],
        id: ModelId,
        spec: ModelSpec,
        card: Option<ModelCard>,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        options.validate()?;
        let spec = Arc::new(spec);
        let label: Arc<str> = id.to_string().into();
        let open_warm = || -> Result<ModelSession, ModelError> {
            let mut session =
                ModelSession::open(bytes, &path, Arc::clone(&label), Arc::clone(&spec), options)?;
            session
                .warm_up(options.warmup_batch)
                .map_err(|source| ModelError::Warmup {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            Ok(session)
        };

        // Check the first session fully before paying for the rest of the pool.
        let mut first = open_warm()?;
        let goldens = card
            .iter()
            .filter_map(|c| c.golden.as_ref())
            .chain(&options.golden);
        for golden in goldens {
            golden.verify(&mut first, &path)?;
        }
        let mut sessions = Vec::with_capacity(options.sessions);
        sessions.push(Mutex::new(first));
        for _ in 1..options.sessions {
            sessions.push(Mutex::new(open_warm()?));
        }

        let info = ModelInfo {
            id,
            sha256: sha256_hex(bytes),
            path,
        };
        tracing::info!(
            model = %info.id,
            sha256 = %info.sha256,
            sessions = sessions.len(),
            intra_threads = options.intra_threads,
            "model loaded"
        );
        Ok(Self {
            info,
            spec,
            card,
            sessions: sessions.into_boxed_slice(),
            next_session: AtomicUsize::new(0),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn id(&self) -> &ModelId {
        &self.info.id
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The card the model was loaded from, if any.
    pub fn card(&self) -> Option<&ModelCard> {
        self.card.as_ref()
    }

    /// The ordered feature names of a tabular model, from its card (empty without one).
    pub fn features(&self) -> &[String] {
        self.card
            .as_ref()
            .map_or(&[], |card| card.features.as_slice())
    }

    /// Borrows a free session from the pool, waiting for one if all are busy. A worker
    /// that runs many batches in a row may hold it to skip the pool look-up.
    pub fn session(&self) -> MutexGuard<'_, ModelSession> {
        let count = self.sessions.len();
        let start = self.next_session.fetch_add(1, Ordering::Relaxed) % count;
        for offset in 0..count {
            match self.sessions[(start + offset) % count].try_lock() {
                Ok(session) => return session,
                // A panic elsewhere during a run leaves the session itself usable.
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`ModelSession::run`].
    pub fn run(&self, inputs: &[(&str, TensorInput<'_>)]) -> Result<Outputs, ModelError> {
        self.session().run(inputs)
    }

    /// See [`ModelSession::predict`].
    pub fn predict(&self, features: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        self.session().predict(features)
    }

    /// See [`ModelSession::predict_output`].
    pub fn predict_output(
        &self,
        features: ArrayView2<'_, f32>,
        output: &str,
    ) -> Result<Array2<f32>, ModelError> {
        self.session().predict_output(features, output)
    }

    /// See [`ModelSession::predict_scores`].
    pub fn predict_scores(&self, features: ArrayView2<'_, f32>) -> Result<Array1<f32>, ModelError> {
        self.session().predict_scores(features)
    }
}
