//! The conversion policy file: which action a scored session earns, and who is held out.
//!
//! A TOML file (`policy.file`), validated whole before it serves; a file that fails is
//! refused with the key it failed on. Every section but `version` is optional; a missing
//! rule never fires.
//!
//! ```toml
//! version = "2026-11-28.1"
//! holdout_share = 0.1          # xxh3_64(user_id) % 10000 < share * 10000 -> arm "holdout"
//! [caps]
//! max_actions_per_user = 3     # actions (any type) per user per window
//! window_secs = 86400
//! [remind_cart]                # after the session has been idle, cart non-empty
//! min_abandonment = 0.5
//! idle_secs = 300
//! cooldown_secs = 3600
//! [offer_coupon]               # on a prediction of the stream
//! min_purchase = 0.3
//! max_purchase = 0.6
//! min_cart_value = 50.0
//! cooldown_secs = 86400
//! ```

use std::path::Path;

use serde::Deserialize;

/// Action names as published.
pub const REMIND_CART: &str = "remind_cart";
pub const OFFER_COUPON: &str = "offer_coupon";
/// Arm names as published.
pub const TREATMENT: &str = "treatment";
pub const HOLDOUT: &str = "holdout";

/// Hash buckets of the holdout split.
const BUCKETS: u64 = 10_000;

/// A policy file, validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Published with every action, so an action names the rules that chose it.
    pub version: String,
    /// Share of users in the holdout arm, 0 to 1. Default 0.
    #[serde(default)]
    pub holdout_share: f64,
    #[serde(default)]
    pub caps: Caps,
    pub remind_cart: Option<RemindCart>,
    pub offer_coupon: Option<OfferCoupon>,
}

/// Per-user frequency cap over all actions, in a fixed window started by the first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    pub max_actions_per_user: u64,
    pub window_secs: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_actions_per_user: 3,
            window_secs: 86_400,
        }
    }
}

/// `remind_cart`: abandonment likely and the session idle with something in the cart.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemindCart {
    pub min_abandonment: f32,
    pub idle_secs: u64,
    pub cooldown_secs: u64,
}

/// `offer_coupon`: purchase undecided and the cart worth it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferCoupon {
    pub min_purchase: f32,
    pub max_purchase: f32,
    pub min_cart_value: f64,
    pub cooldown_secs: u64,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a valid policy: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

/// What a session's scores earn under a rule, before holdout, caps and cool-downs.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: &'static str,
    pub reason: String,
    pub cooldown_secs: u64,
}

/// The session facts a rule reads besides the scores.
#[derive(Debug, Clone, Copy)]
pub struct Cart {
    pub lines: f64,
    pub value: f64,
}

fn probability(key: &str, p: f32) -> Result<(), PolicyError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(PolicyError::Invalid(format!("{key} must be in [0, 1]")))
    }
}

fn at_least_one(key: &str, v: u64) -> Result<(), PolicyError> {
    if v >= 1 {
        Ok(())
    } else {
        Err(PolicyError::Invalid(format!("{key} must be at least 1")))
    }
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        Policy::parse(&std::fs::read_to_string(path)?)
    }

    /// Parses and validates a policy.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text)?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self.version.trim().is_empty() {
            return Err(PolicyError::Invalid("version must not be empty".into()));
        }
        if !(0.0..=1.0).contains(&self.holdout_share) {
            return Err(PolicyError::Invalid(
                "holdout_share must be in [0, 1]".into(),
            ));
        }
        at_least_one("caps.max_actions_per_user", self.caps.max_actions_per_user)?;
        at_least_one("caps.window_secs", self.caps.window_secs)?;
        if let Some(r) = &self.remind_cart {
            probability("remind_cart.min_abandonment", r.min_abandonment)?;
            at_least_one("remind_cart.idle_secs", r.idle_secs)?;
            at_least_one("remind_cart.cooldown_secs", r.cooldown_secs)?;
        }
        if let Some(o) = &self.offer_coupon {
            probability("offer_coupon.min_purchase", o.min_purchase)?;
            probability("offer_coupon.max_purchase", o.max_purchase)?;
            if o.min_purchase > o.max_purchase {
                return Err(PolicyError::Invalid(
                    "offer_coupon.min_purchase must not exceed offer_coupon.max_purchase".into(),
                ));
            }
            if !o.min_cart_value.is_finite() || o.min_cart_value < 0.0 {
                return Err(PolicyError::Invalid(
                    "offer_coupon.min_cart_value must be a number at least 0".into(),
                ));
            }
            at_least_one("offer_coupon.cooldown_secs", o.cooldown_secs)?;
        }
        Ok(())
    }

    /// The arm of `user_id`: stable across instances, restarts and policy versions with
    /// the same share (xxh3_64 of the id's bytes, seed 0, mod 10000).
    pub fn arm(&self, user_id: &str) -> &'static str {
        let bucket = xxhash_rust::xxh3::xxh3_64(user_id.as_bytes()) % BUCKETS;
        if (bucket as f64) < self.holdout_share * BUCKETS as f64 {
            HOLDOUT
        } else {
            TREATMENT
        }
    }

    /// `remind_cart` for a session idle `idle_secs` with `cart`, if the rule fires.
    pub fn on_idle(&self, abandonment: f32, idle_secs: u64, cart: Cart) -> Option<Decision> {
        let r = self.remind_cart.as_ref()?;
        (cart.lines > 0.0 && abandonment >= r.min_abandonment && idle_secs >= r.idle_secs).then(
            || Decision {
                action: REMIND_CART,
                reason: format!(
                    "P(abandon) {abandonment:.3} >= {} and idle {idle_secs} s >= {} s with {} cart lines worth {:.2}",
                    r.min_abandonment, r.idle_secs, cart.lines, cart.value
                ),
                cooldown_secs: r.cooldown_secs,
            },
        )
    }

    /// `offer_coupon` for a prediction of the stream, if the rule fires.
    pub fn on_prediction(&self, purchase: f32, cart: Cart) -> Option<Decision> {
        let o = self.offer_coupon.as_ref()?;
        let in_band = (o.min_purchase..=o.max_purchase).contains(&purchase);
        (in_band && cart.lines > 0.0 && cart.value >= o.min_cart_value).then(|| Decision {
            action: OFFER_COUPON,
            reason: format!(
                "P(purchase) {purchase:.3} in [{}, {}] and cart value {:.2} >= {}",
                o.min_purchase, o.max_purchase, cart.value, o.min_cart_value
            ),
            cooldown_secs: o.cooldown_secs,
        })
    }

    /// The idle time of `remind_cart`, if the rule is on.
    pub fn idle_secs(&self) -> Option<u64> {
        self.remind_cart.as_ref().map(|r| r.idle_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../models/policy.toml");

    #[test]
    fn the_shipped_policy_is_valid() {
        let p = Policy::parse(SHIPPED).unwrap();
        assert!(p.remind_cart.is_some() && p.offer_coupon.is_some());
    }

    #[test]
    fn a_bad_policy_names_its_key() {
        let bad = SHIPPED.replace("min_abandonment = 0.5", "min_abandonment = 1.5");
        let err = Policy::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("remind_cart.min_abandonment"), "{err}");
        let err = Policy::parse("version = \"1\"\nholdout = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("holdout"), "{err}");
    }

    #[test]
    fn rules_fire_on_their_thresholds_only() {
        let p = Policy::parse(SHIPPED).unwrap();
        let cart = Cart {
            lines: 1.0,
            value: 60.0,
        };
        let empty = Cart {
            lines: 0.0,
            value: 0.0,
        };
        assert_eq!(p.on_idle(0.5, 300, cart).unwrap().action, REMIND_CART);
        assert!(p.on_idle(0.49, 300, cart).is_none());
        assert!(p.on_idle(0.9, 299, cart).is_none());
        assert!(p.on_idle(0.9, 300, empty).is_none());
        assert_eq!(p.on_prediction(0.3, cart).unwrap().action, OFFER_COUPON);
        assert!(p.on_prediction(0.61, cart).is_none());
        assert!(
            p.on_prediction(
                0.4,
                Cart {
                    value: 49.0,
                    ..cart
                }
            )
            .is_none()
        );
    }

    #[test]
    fn the_holdout_split_is_stable_and_near_its_share() {
        let p = Policy {
            holdout_share: 0.1,
            ..Policy::parse(SHIPPED).unwrap()
        };
        let held = (0..10_000)
            .filter(|n| p.arm(&format!("u-{n}")) == HOLDOUT)
            .count();
        assert!((900..=1100).contains(&held), "{held}");
        assert_eq!(p.arm("u-42"), p.arm("u-42"));
        let none = Policy {
            holdout_share: 0.0,
            ..p.clone()
        };
        let all = Policy {
            holdout_share: 1.0,
            ..p
        };
        assert_eq!(none.arm("u-42"), TREATMENT);
        assert_eq!(all.arm("u-42"), HOLDOUT);
    }
}
