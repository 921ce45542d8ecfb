//! What to simulate: sizes, time, output format and fault injection.

use serde::{Deserialize, Serialize};

/// 2026-01-01T00:00:00Z: a fixed default so that runs are reproducible without a clock.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Year 3000: far enough for any run, near enough that RFC 3339 formatting cannot fail.
const LATEST_START_MS: i64 = 32_503_680_000_000;

/// Everything that shapes a simulation run. Same config (seed included) ⇒ byte-identical
/// output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Catalog size.
    pub items: usize,
    /// Number of shoppers; each has latent preferences and returns over time.
    pub users: usize,
    /// Browsing sessions to generate before the stream ends; `None` never ends.
    pub sessions: Option<u64>,
    /// Event time of the catalog and of the start of traffic, epoch milliseconds. Set it to
    /// the current time (and pace output by `SimRecord::ts_ms`) for a live demo.
    pub start_ms: i64,
    /// Mean simulated time from the end of one of a shopper's sessions to the start of their
    /// next, for a shopper of average activity. Arrivals also follow a day/night cycle.
    /// Together with `users` this sets traffic volume: sessions per day ≈ users × 1 day / gap.
    pub mean_session_gap_ms: u64,
    /// Mean delay from an order to its reviews, returns and tickets.
    pub mean_aftersales_delay_ms: u64,
    /// Mean time between routine catalog changes (sales, price rises, deliveries), each
    /// emitted as an `item` re-upsert.
    pub mean_catalog_update_gap_ms: u64,
    /// ISO 4217 code put on orders.
    pub currency: String,
    /// Leave `session_id` out of every event so ingest has to assign sessions itself.
    /// Sessions are built so that a 30-minute inactivity rule recovers them exactly.
    pub omit_session_ids: bool,
    /// Emit `ts` as an RFC 3339 string (millisecond precision, UTC) instead of epoch ms.
    pub rfc3339_timestamps: bool,
    /// Share of emitted records that are malformed, in [0, 1).
    pub invalid_rate: f64,
    /// Share of emitted records that repeat a recent valid event with the same `event_id`.
    pub duplicate_rate: f64,
    /// Keep `SessionTruth` records for `Simulator::take_finished_truths`. Turn off for
    /// endless streams nobody drains, so memory stays bounded.
    pub collect_truths: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            items: 2_000,
            users: 5_000,
            sessions: Some(10_000),
            start_ms: DEFAULT_START_MS,
            mean_session_gap_ms: 2 * DAY_MS,
            mean_aftersales_delay_ms: 4 * DAY_MS,
            mean_catalog_update_gap_ms: HOUR_MS / 2,
            currency: "EUR".to_owned(),
            omit_session_ids: false,
            rfc3339_timestamps: false,
            invalid_rate: 0.0,
            duplicate_rate: 0.0,
            collect_truths: true,
        }
    }
}

/// Why a `SimConfig` cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} must be at least 1")]
    Empty { field: &'static str },
    #[error("{field} must be at most {max}, got {value}")]
    TooLarge {
        field: &'static str,
        max: u64,
        value: u64,
    },
    #[error("{field} must be positive")]
    ZeroDuration { field: &'static str },
    #[error("start_ms must be within [0, {LATEST_START_MS}], got {0}")]
    StartOutOfRange(i64),
    #[error("{field} must be within [0, 1), got {value}")]
    RateOutOfRange { field: &'static str, value: f64 },
    #[error("invalid_rate + duplicate_rate must be below 1, got {0}")]
    RatesSumTooHigh(f64),
    #[error("currency must be three upper-case ASCII letters, got {0:?}")]
    BadCurrency(String),
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [("items", self.items), ("users", self.users)] {
            if value == 0 {
                return Err(ConfigError::Empty { field });
            }
            // Item and user indexes are stored as u32 to keep per-session state small.
            if value > u32::MAX as usize {
                return Err(ConfigError::TooLarge {
                    field,
                    max: u64::from(u32::MAX),
                    value: value as u64,
                });
            }
        }
        for (field, value) in [
            ("mean_session_gap_ms", self.mean_session_gap_ms),
            ("mean_aftersales_delay_ms", self.mean_aftersales_delay_ms),
            (
                "mean_catalog_update_gap_ms",
                self.mean_catalog_update_gap_ms,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        if !(0..=LATEST_START_MS).contains(&self.start_ms) {
            return Err(ConfigError::StartOutOfRange(self.start_ms));
        }
        for (field, value) in [
            ("invalid_rate", self.invalid_rate),
            ("duplicate_rate", self.duplicate_rate),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(ConfigError::RateOutOfRange { field, value });
            }
        }
        let injected = self.invalid_rate + self.duplicate_rate;
        if injected >= 1.0 {
            return Err(ConfigError::RatesSumTooHigh(injected));
        }
        let currency_ok =
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(ConfigError::BadCurrency(self.currency.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let cases = [
            (
                SimConfig {
                    items: 0,
                    ..SimConfig::default()
                },
                "items must be at least 1",
            ),
            (
                SimConfig {
                    invalid_rate: 1.5,
                    ..SimConfig::default()
                },
                "invalid_rate must be within [0, 1), got 1.5",
            ),
            (
                SimConfig {
                    invalid_rate: 0.6,
                    duplicate_rate: 0.5,
                    ..SimConfig::default()
                },
                "invalid_rate + duplicate_rate must be below 1, got 1.1",
            ),
            (
                SimConfig {
                    currency: "eur".to_owned(),
                    ..SimConfig::default()
                },
                "currency must be three upper-case ASCII letters, got \"eur\"",
            ),
            (
                SimConfig {
                    mean_session_gap_ms: 0,
                    ..SimConfig::default()
                },
                "mean_session_gap_ms must be positive",
            ),
            (
                SimConfig {
                    start_ms: -1,
                    ..SimConfig::default()
                },
                "start_ms must be within",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().expect_err(expected).to_string();
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn a_partial_config_file_fills_in_defaults_and_rejects_typos() {
        let config: SimConfig = serde_json::from_str(r#"{"seed": 7, "users": 10}"#).unwrap();
        assert_eq!((config.seed, config.users, config.items), (7, 10, 2_000));
        let typo = serde_json::from_str::<SimConfig>(r#"{"sesions": 5}"#);
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `sesions`")
        );
    }
}
