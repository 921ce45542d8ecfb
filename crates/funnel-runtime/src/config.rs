//! Layered configuration with the `config` crate.
//!
//! Order: built-in defaults (the `Default` of the service's config struct),
//! then an optional TOML file, then environment variables
//! `FUNNEL_<SECTION>__<KEY>`. Config structs use `deny_unknown_fields`, so a
//! misspelt key stops the process. Libraries never read the environment: the
//! binary passes the variables in.

use std::path::Path;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A configuration that cannot start the process.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: String, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Validation after merging, for what types alone cannot say.
pub trait Validate {
    /// An error names the key, e.g. `ingest.batch_max must be at least 1`.
    fn validate(&self) -> Result<(), String>;
}

/// Loads `T` from defaults, an optional TOML file and `FUNNEL_*` variables.
///
/// `env` is the process environment (or a test's); only variables of the
/// form `FUNNEL_<SECTION>__<KEY>` are read, `__` separating the levels.
pub fn load_config<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let defaults = config::Config::try_from(&T::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults do not serialise: {e}")))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                message: "no such file".into(),
            });
        }
        builder = builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    // Pass-through maps (`kafka.options`) take keys with dots, which the
    // config crate would read as nesting: they are merged in as whole maps.
    let mut overrides = Vec::new();
    let mut passthrough: std::collections::BTreeMap<String, config::Map<String, config::Value>> =
        Default::default();
    // Only `FUNNEL_<SECTION>__<KEY>` is ours: variables such as Kubernetes'
    // `FUNNEL_INGEST_SERVICE_HOST` (from a Service named funnel-ingest) have
    // no `__` and are left alone.
    for (var, value) in env
        .into_iter()
        .filter(|(k, _)| k.starts_with("FUNNEL_") && k.contains("__"))
    {
        match env_key(&var) {
            EnvKey::Plain(key) => overrides.push((key, value)),
            EnvKey::Option { map, option } => {
                passthrough
                    .entry(map)
                    .or_default()
                    .insert(option, config::Value::from(value));
            }
        }
    }
    for (key, value) in overrides {
        builder = builder
            .set_override(key.clone(), value)
            .map_err(|e| ConfigError::Invalid(format!("environment key `{key}`: {e}")))?;
    }
    if !passthrough.is_empty() {
        let partial = builder
            .build_cloned()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (map, options) in passthrough {
            let mut merged: config::Map<String, config::Value> =
                partial.get(&map).unwrap_or_default();
            merged.extend(options);
            builder = builder
                .set_override(map.clone(), merged)
                .map_err(|e| ConfigError::Invalid(format!("environment key `{map}`: {e}")))?;
        }
    }
    let merged = builder.build().map_err(|e| match file {
        Some(path) => ConfigError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        },
        None => ConfigError::Invalid(e.to_string()),
    })?;
    // `deny_unknown_fields` errors do not say which section a key was in, so
    // unknown keys are found first by comparing against the defaults.
    let merged_json: serde_json::Value = merged
        .clone()
        .try_deserialize()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let defaults_json = serde_json::to_value(T::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults do not serialise: {e}")))?;
    if let Some(key) = first_unknown_key(&merged_json, &defaults_json, "") {
        return Err(ConfigError::Invalid(format!("unknown key `{key}`")));
    }
    // The config crate's deserializer is lenient with strings from the
    // environment ("512", "true") and names the key of a bad value.
    let parsed: T = merged
        .try_deserialize()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    parsed.validate().map_err(ConfigError::Invalid)?;
    Ok(parsed)
}

enum EnvKey {
    Plain(String),
    /// An entry of a pass-through map: `map` is e.g. `kafka.options`.
    Option {
        map: String,
        option: String,
    },
}

/// `FUNNEL_INGEST__BATCH_MAX` to `ingest.batch_max`, and
/// `FUNNEL_KAFKA__OPTIONS__SASL_MECHANISM` to option `sasl.mechanism` of
/// `kafka.options`: librdkafka names have dots, which variable names cannot.
fn env_key(var: &str) -> EnvKey {
    let parts = var["FUNNEL_".len()..]
        .split("__")
        .map(str::to_lowercase)
        .collect::<Vec<_>>();
    if parts.len() >= 3 && parts[1] == "options" {
        EnvKey::Option {
            map: format!("{}.options", parts[0]),
            option: parts[2..].join("_").replace('_', "."),
        }
    } else {
        EnvKey::Plain(parts.join("."))
    }
}

/// The first key of `merged` that the defaults do not have. An empty object in
/// the defaults is an open map (e.g. `kafka.options`) and takes any key.
fn first_unknown_key(
    merged: &serde_json::Value,
    defaults: &serde_json::Value,
    prefix: &str,
) -> Option<String> {
    let (serde_json::Value::Object(m), serde_json::Value::Object(d)) = (merged, defaults) else {
        return None;
    };
    if d.is_empty() {
        return None;
    }
    for (k, v) in m {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match d.get(k) {
            None => return Some(path),
            Some(dv) => {
                if let Some(found) = first_unknown_key(v, dv, &path) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// The gRPC listener of a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address the gRPC server binds.
    pub listen: String,
}

impl GrpcConfig {
    pub fn with_listen(listen: &str) -> Self {
        GrpcConfig {
            listen: listen.to_string(),
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig::with_listen("0.0.0.0:50051")
    }
}

/// Renders the effective configuration as TOML with secrets masked.
pub fn render_masked<T: Serialize>(config: &T) -> String {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    mask_secrets(&mut value, "");
    match toml::to_string(&value) {
        Ok(s) => s,
        Err(_) => serde_json::to_string_pretty(&value).unwrap_or_default(),
    }
}

const SECRET_WORDS: [&str; 6] = [
    "password",
    "secret",
    "token",
    "jaas",
    "key.pem",
    "credential",
];

/// Masks values whose key names a secret, and passwords inside URLs.
pub fn mask_secrets(value: &mut serde_json::Value, key: &str) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                mask_secrets(v, k);
            }
        }
        serde_json::Value::String(s) => {
            let lower = key.to_ascii_lowercase();
            if SECRET_WORDS.iter().any(|w| lower.contains(w)) && !s.is_empty() {
                *s = "***".into();
            } else if let Some(masked) = mask_url_password(s) {
                *s = masked;
            }
        }
        _ => {}
    }
}

/// `redis://user:pw@host:6379/0` to `redis://user:***@host:6379/0`.
fn mask_url_password(s: &str) -> Option<String> {
    let scheme_end = s.find("://")? + 3;
    let rest = &s[scheme_end..];
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    let masked = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => "***".to_string(),
    };
    Some(format!("{}{}{}", &s[..scheme_end], masked, &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        grpc: GrpcConfig,
        work: Work,
        kafka: Kafka,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Work {
        batch_max: usize,
        enabled: bool,
        name: String,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Kafka {
        options: std::collections::BTreeMap<String, String>,
    }

    impl Default for Work {
        fn default() -> Self {
            Work {
                batch_max: 100,
                enabled: true,
                name: "w".into(),
            }
        }
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), String> {
            if self.work.batch_max == 0 {
                return Err("work.batch_max must be at least 1".into());
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = std::env::temp_dir().join(format!("funnel-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[work]\nbatch_max = 7\nname = \"from-file\"\n").unwrap();
        let cfg: Sample = load_config(
            Some(&file),
            env(&[
                ("FUNNEL_WORK__NAME", "from-env"),
                ("FUNNEL_GRPC__LISTEN", "127.0.0.1:1"),
                ("FUNNEL_KAFKA__OPTIONS__SASL_MECHANISM", "PLAIN"),
                ("OTHER_VAR", "ignored"),
                ("FUNNEL_INGEST_SERVICE_HOST", "10.0.0.1"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.work.batch_max, 7);
        assert_eq!(cfg.work.name, "from-env");
        assert!(cfg.work.enabled);
        assert_eq!(cfg.grpc.listen, "127.0.0.1:1");
        assert_eq!(cfg.kafka.options["sasl.mechanism"], "PLAIN");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn numbers_and_booleans_from_the_environment_are_parsed() {
        let cfg: Sample = load_config(
            None,
            env(&[
                ("FUNNEL_WORK__BATCH_MAX", "512"),
                ("FUNNEL_WORK__ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.work.batch_max, 512);
        assert!(!cfg.work.enabled);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let err = load_config::<Sample>(None, env(&[("FUNNEL_WORK__BATCH_MAXX", "5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_maxx"), "{err}");
        let err = load_config::<Sample>(None, env(&[("FUNNEL_WROK__NAME", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrok"), "{err}");
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_key() {
        let err = load_config::<Sample>(None, env(&[("FUNNEL_WORK__BATCH_MAX", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("work.batch_max"), "{err}");
        let err = load_config::<Sample>(None, env(&[("FUNNEL_WORK__BATCH_MAX", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("work.batch_max must be at least 1"), "{err}");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut v = serde_json::json!({
            "redis": {"url": "redis://app:hunter2@redis:6379/0"},
            "kafka": {"options": {"sasl.password": "hunter2", "sasl.username": "app"}}
        });
        mask_secrets(&mut v, "");
        let s = v.to_string();
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("redis://app:***@redis:6379/0"), "{s}");
        assert!(s.contains("\"sasl.username\":\"app\""), "{s}");
    }
}
