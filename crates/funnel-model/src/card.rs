//! Model cards: the `model.json` beside each `model.onnx`, and the file's checksum.
//!
//! A model version lives at `<models root>/<name>/<version>/` with its card:
//!
//! ```json
//! {
//!   "name": "logistic", "version": "1", "file": "model.onnx", "sha256": "0a3b…",
//!   "inputs":  [{"name": "features", "dtype": "float32", "shape": ["batch", 4]}],
//!   "outputs": [{"name": "probability", "dtype": "float32", "shape": ["batch", 1]}],
//!   "features": ["sessions_7d", "cart_adds_7d", "dwell_minutes", "is_returning"],
//!   "score": {"output": "probability", "column": 0},
//!   "golden": {"tolerance": 1e-6, "inputs": {…}, "outputs": {…}},
//!   "metadata": {"trained_on": "…"}
//! }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ModelError;
use crate::golden::GoldenCheck;
use crate::spec::{Dim, ModelSpec, ScoreOutput, TensorSpec};

/// The file name of every card.
pub const CARD_FILE: &str = "model.json";

/// Where the card of `name` at `version` lives under a models root.
pub fn card_path(models_root: &Path, name: &str, version: &str) -> PathBuf {
    models_root.join(name).join(version).join(CARD_FILE)
}

/// Lowercase hex SHA-256 of `bytes`, as cards write it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

fn default_file() -> String {
    "model.onnx".to_owned()
}

/// What a model version is and promises: its file and checksum, its signature, the
/// ordered feature names of a tabular model, which output is the score, and golden
/// vectors it must reproduce before it may serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    /// The model file, relative to the card's directory.
    #[serde(default = "default_file")]
    pub file: String,
    /// Lowercase hex SHA-256 of the model file.
    pub sha256: String,
    #[serde(default)]
    pub description: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Feature names in the column order of a tabular model's input.
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub score: Option<ScoreOutput>,
    #[serde(default)]
    pub golden: Option<GoldenCheck>,
    /// Free-form facts about training (data window, metrics); not interpreted here.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl ModelCard {
    /// Reads and validates a card.
    pub fn load(card_path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(card_path).map_err(|source| ModelError::Read {
            path: card_path.to_path_buf(),
            source,
        })?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|source| ModelError::CardParse {
                path: card_path.to_path_buf(),
                source,
            })?;
        card.validate().map_err(|reason| ModelError::InvalidCard {
            path: card_path.to_path_buf(),
            reason,
        })?;
        Ok(card)
    }

    /// Reads the card of `name` at `version` under a models root, and checks that the
    /// card agrees with the directory it sits in.
    pub fn load_from_store(
        models_root: &Path,
        name: &str,
        version: &str,
    ) -> Result<Self, ModelError> {
        let path = card_path(models_root, name, version);
        let card = Self::load(&path)?;
        if card.name != name || card.version != version {
            return Err(ModelError::InvalidCard {
                path,
                reason: format!(
                    "card is for {}@{} but sits at {name}/{version}",
                    card.name, card.version
                ),
            });
        }
        Ok(card)
    }

    /// The signature the card promises.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            score: self.score.clone(),
        }
    }

    /// The model file of a card read from `card_path`.
    pub fn model_path(&self, card_path: &Path) -> PathBuf {
        card_path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(&self.file)
    }

    /// Reads the model file and checks it against the card's checksum.
    pub fn read_model(&self, card_path: &Path) -> Result<(PathBuf, Vec<u8>), ModelError> {
        let path = self.model_path(card_path);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Read {
            path: path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != self.sha256 {
            return Err(ModelError::Checksum {
                path,
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok((path, bytes))
    }

    fn validate(&self) -> Result<(), String> {
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            if value.is_empty() || value.contains(['/', '\\']) || value == ".." {
                return Err(format!("{field} `{value}` is not a directory name"));
            }
        }
        let file = Path::new(&self.file);
        if self.file.is_empty() || !file.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!(
                "file `{}` must be a path inside the card's directory",
                self.file
            ));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!(
                "sha256 `{}` is not 64 lowercase hex digits",
                self.sha256
            ));
        }
        self.spec().validate()?;
        if !self.features.is_empty() {
            let mut seen = HashSet::new();
            if let Some(dup) = self.features.iter().find(|f| !seen.insert(f.as_str())) {
                return Err(format!("feature `{dup}` is listed twice"));
            }
            let [input] = self.inputs.as_slice() else {
                return Err("features are listed but the model has several inputs".to_owned());
            };
            match input.shape.as_slice() {
                [_, Dim::Fixed(columns)] if *columns != self.features.len() => {
                    return Err(format!(
                        "{} features are listed but input `{}` has {columns} columns",
                        self.features.len(),
                        input.name
                    ));
                }
                [_, _] => {}
                _ => {
                    return Err(format!(
                        "features are listed but input `{}` is not [batch, features]",
                        input.name
                    ));
                }
            }
        }
        if let Some(golden) = &self.golden {
            golden.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_card_must_stay_inside_its_directory() {
        let text = format!(
            r#"{{"name":"m","version":"1","file":"../other.onnx","sha256":"{}",
               "inputs":[{{"name":"x","dtype":"float32","shape":["batch",2]}}],
               "outputs":[{{"name":"y","dtype":"float32","shape":["batch",1]}}]}}"#,
            "0".repeat(64)
        );
        let card: ModelCard = serde_json::from_str(&text).unwrap();
        assert!(card.validate().unwrap_err().contains("inside"));
    }

    #[test]
    fn the_feature_list_must_match_the_input_width() {
        let text = format!(
            r#"{{"name":"m","version":"1","sha256":"{}","features":["a","b","c"],
               "inputs":[{{"name":"x","dtype":"float32","shape":["batch",2]}}],
               "outputs":[{{"name":"y","dtype":"float32","shape":["batch",1]}}]}}"#,
            "0".repeat(64)
        );
        let card: ModelCard = serde_json::from_str(&text).unwrap();
        let reason = card.validate().unwrap_err();
        assert!(
            reason.contains("3 features") && reason.contains("2 columns"),
            "{reason}"
        );
    }

    #[test]
    fn unknown_card_fields_are_refused() {
        let text = format!(
            r#"{{"name":"m","version":"1","sha256":"{}","scores":{{}},
               "inputs":[], "outputs":[]}}"#,
            "0".repeat(64)
        );
        let err = serde_json::from_str::<ModelCard>(&text).unwrap_err();
        assert!(err.to_string().contains("scores"), "{err}");
    }
}
