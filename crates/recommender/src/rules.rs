//! The business rules file: what may not be recommended, diversity caps and boosts.
//!
//! A TOML file (`rules.file`, shipped `models/rules.toml`), validated whole before it
//! serves and reloaded when it changes; a file that fails is refused with the key it
//! failed on and the previous rules keep serving.
//!
//! ```toml
//! version = "2026-11-29.1"
//! exclude_cart_scenarios = ["home", "item_page"]
//! [repurchase]
//! window_secs = 2592000          # a purchased item stays out this long
//! [repurchase.categories]
//! "grocery" = 604800             # per category prefix, the longest match wins
//! [diversity]
//! max_per_category = 4           # per leaf category in one list
//! max_per_brand = 3
//! [[boosts]]
//! category = "electronics"       # optional: a category prefix
//! brand = "Sonora"               # optional
//! new_items = true               # optional: first seen within catalog.new_item_secs
//! factor = 1.2
//! ```
//!
//! Always dropped, whatever the file says: items the catalog does not know, out of stock
//! (stock ≤ 0) or inactive, the request's context item and excluded items, and items
//! outside the request's category filter.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use funnel_runtime::Shutdown;
use funnel_runtime::reload::{self, FileStamp};
use serde::Deserialize;

use crate::features::{FastMap, ItemRecord, Scenario};

/// A rules file, validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub version: String,
    #[serde(default)]
    pub exclude_cart_scenarios: Vec<String>,
    pub repurchase: Repurchase,
    pub diversity: Diversity,
    #[serde(default)]
    pub boosts: Vec<Boost>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repurchase {
    pub window_secs: u64,
    #[serde(default)]
    pub categories: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diversity {
    pub max_per_category: usize,
    pub max_per_brand: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boost {
    pub category: Option<String>,
    pub brand: Option<String>,
    pub new_items: Option<bool>,
    pub factor: f64,
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("not valid rules: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Why a candidate was dropped before ranking (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    Unknown,
    OutOfStock,
    Inactive,
    Purchased,
    InCart,
    Excluded,
    Category,
}

impl Drop {
    pub const ALL: [Drop; 7] = [
        Drop::Unknown,
        Drop::OutOfStock,
        Drop::Inactive,
        Drop::Purchased,
        Drop::InCart,
        Drop::Excluded,
        Drop::Category,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Drop::Unknown => "unknown_item",
            Drop::OutOfStock => "out_of_stock",
            Drop::Inactive => "inactive",
            Drop::Purchased => "purchased",
            Drop::InCart => "in_cart",
            Drop::Excluded => "excluded",
            Drop::Category => "category_filter",
        }
    }
}

/// Whether `category` is `prefix` or below it (whole path segments).
pub fn under(category: &str, prefix: &str) -> bool {
    category
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What one request forbids, besides the catalog's own state.
pub struct RequestLimits<'a> {
    pub scenario: Scenario,
    pub now_ms: i64,
    /// Item → time of its last purchase by the user (ms).
    pub purchased: &'a FastMap<String, i64>,
    pub cart: &'a [String],
    /// The context item and the request's exclude list.
    pub excluded: &'a [&'a str],
    /// Category prefix; empty: any.
    pub category: &'a str,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        Rules::parse(&std::fs::read_to_string(path)?)
    }

    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let rules: Rules = toml::from_str(text)?;
        rules.validate()?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), RulesError> {
        let invalid = |m: String| Err(RulesError::Invalid(m));
        if self.version.trim().is_empty() {
            return invalid("version must not be empty".into());
        }
        if let Some(s) = self
            .exclude_cart_scenarios
            .iter()
            .find(|s| Scenario::parse(s).is_none())
        {
            return invalid(format!(
                "exclude_cart_scenarios: unknown scenario {s:?} (home, item_page, cart, post_purchase)"
            ));
        }
        if self.diversity.max_per_category == 0 || self.diversity.max_per_brand == 0 {
            return invalid(
                "diversity.max_per_category and diversity.max_per_brand must be at least 1".into(),
            );
        }
        if let Some((n, _)) = self
            .boosts
            .iter()
            .enumerate()
            .find(|(_, b)| !(b.factor.is_finite() && b.factor > 0.0))
        {
            return invalid(format!("boosts[{n}].factor must be a number above 0"));
        }
        Ok(())
    }

    /// How long after a purchase an item of `category` stays out.
    pub fn repurchase_window_ms(&self, category: &str) -> i64 {
        let secs = self
            .repurchase
            .categories
            .iter()
            .filter(|(prefix, _)| under(category, prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.repurchase.window_secs, |(_, secs)| *secs);
        (secs as i64).saturating_mul(1000)
    }

    /// Why `item` (its catalog record, if any) may not be recommended, if it may not.
    pub fn drop_reason(
        &self,
        id: &str,
        record: Option<&ItemRecord>,
        limits: &RequestLimits<'_>,
    ) -> Option<Drop> {
        let Some(record) = record else {
            return Some(Drop::Unknown);
        };
        if limits.excluded.contains(&id) {
            return Some(Drop::Excluded);
        }
        if record.stock <= 0 {
            return Some(Drop::OutOfStock);
        }
        if !record.active {
            return Some(Drop::Inactive);
        }
        if !limits.category.is_empty() && !under(&record.category, limits.category) {
            return Some(Drop::Category);
        }
        if let Some(bought_ms) = limits.purchased.get(id)
            && limits.now_ms - bought_ms < self.repurchase_window_ms(&record.category)
        {
            return Some(Drop::Purchased);
        }
        // The cart (a few items) before the scenario names: most candidates are in no cart.
        if limits.cart.iter().any(|c| c == id)
            && self
                .exclude_cart_scenarios
                .iter()
                .any(|s| s == limits.scenario.name())
        {
            return Some(Drop::InCart);
        }
        None
    }

    /// The product of the boosts that apply to an item.
    pub fn boost(&self, record: &ItemRecord, is_new: bool) -> f64 {
        self.boosts
            .iter()
            .filter(|b| {
                b.category
                    .as_deref()
                    .is_none_or(|c| under(&record.category, c))
            })
            .filter(|b| b.brand.as_deref().is_none_or(|br| br == record.brand))
            .filter(|b| b.new_items.is_none_or(|n| n == is_new))
            .map(|b| b.factor)
            .product()
    }

    /// The first `count` of `ranked` (best first) that keep the diversity caps: at most
    /// `max_per_category` per leaf category and `max_per_brand` per non-empty brand.
    pub fn diversify<'a, T>(
        &self,
        ranked: impl IntoIterator<Item = (T, &'a ItemRecord)>,
        count: usize,
    ) -> Vec<T> {
        let mut per_category: HashMap<&str, usize> = HashMap::new();
        let mut per_brand: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(count);
        for (item, record) in ranked {
            if out.len() == count {
                break;
            }
            let c = per_category.entry(record.category.as_str()).or_default();
            if *c >= self.diversity.max_per_category {
                continue;
            }
            if !record.brand.is_empty() {
                let b = per_brand.entry(record.brand.as_str()).or_default();
                if *b >= self.diversity.max_per_brand {
                    continue;
                }
                *b += 1;
            }
            *per_category
                .get_mut(record.category.as_str())
                .expect("counted") += 1;
            out.push(item);
        }
        out
    }
}

/// The rules in service, swapped whole on reload.
#[derive(Clone)]
pub struct RulesCell {
    current: Arc<RwLock<Arc<Rules>>>,
}

impl RulesCell {
    pub fn new(rules: Rules) -> Self {
        RulesCell {
            current: Arc::new(RwLock::new(Arc::new(rules))),
        }
    }

    pub fn get(&self) -> Arc<Rules> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, rules: Rules) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }
}

/// Reloads `path` into `cell` whenever its modification time or length changes from
/// `loaded` (its stamp taken before the serving rules were read), until `stop`.
/// `on_change(ok)` is told whether each changed version was taken.
pub async fn watch_rules(
    path: PathBuf,
    loaded: FileStamp,
    cell: RulesCell,
    every: Duration,
    on_change: impl Fn(bool) + Send + 'static,
    stop: Shutdown,
) {
    reload::on_change(&path, loaded, every, &stop, || {
        let loaded = Rules::load(&path);
        on_change(loaded.is_ok());
        match loaded {
            Ok(rules) => {
                tracing::info!(version = %rules.version, file = %path.display(), "rules reloaded");
                cell.set(rules);
            }
            Err(e) => {
                let serving = cell.get().version.clone();
                tracing::error!(file = %path.display(), error = %e, %serving, "rules refused; the previous rules keep serving");
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../models/rules.toml");

    fn item(category: &str, brand: &str, stock: i64) -> ItemRecord {
        ItemRecord {
            stock,
            ..ItemRecord::new(category, brand, "", 10.0)
        }
    }

    fn limits<'a>(
        purchased: &'a FastMap<String, i64>,
        cart: &'a [String],
        excluded: &'a [&'a str],
        scenario: Scenario,
    ) -> RequestLimits<'a> {
        RequestLimits {
            scenario,
            now_ms: 1_000_000_000,
            purchased,
            cart,
            excluded,
            category: "",
        }
    }

    #[test]
    fn the_shipped_rules_are_valid_and_a_bad_file_names_its_key() {
        let rules = Rules::parse(SHIPPED).unwrap();
        assert_eq!(rules.diversity.max_per_category, 4);
        let bad = SHIPPED.replace("max_per_brand = 3", "max_per_brand = 0");
        let err = Rules::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("diversity.max_per_brand"), "{err}");
        let bad = SHIPPED.replace("factor = 1.1", "factor = -1");
        assert!(
            Rules::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("boosts[0].factor")
        );
        let bad = SHIPPED.replace("\"home\", ", "\"homepage\", ");
        assert!(
            Rules::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("homepage")
        );
    }

    #[test]
    fn an_item_bought_five_seconds_ago_is_dropped() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let now = 1_000_000_000;
        let purchased: FastMap<String, i64> = [("a".to_owned(), now - 5_000)].into_iter().collect();
        let l = limits(&purchased, &[], &[], Scenario::Home);
        let r = item("books", "", 3);
        assert_eq!(rules.drop_reason("a", Some(&r), &l), Some(Drop::Purchased));
        assert_eq!(rules.drop_reason("b", Some(&r), &l), None);
    }

    #[test]
    fn the_repurchase_window_is_per_category_prefix() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let now = 1_000_000_000_000;
        let eight_days = 8 * 86_400_000;
        let purchased: FastMap<String, i64> =
            [("a".to_owned(), now - eight_days)].into_iter().collect();
        let l = RequestLimits {
            now_ms: now,
            ..limits(&purchased, &[], &[], Scenario::Home)
        };
        // grocery: 7 days, so it may come back; books: 30 days, not yet.
        assert_eq!(
            rules.drop_reason("a", Some(&item("grocery/tea", "", 1)), &l),
            None
        );
        assert_eq!(
            rules.drop_reason("a", Some(&item("books", "", 1)), &l),
            Some(Drop::Purchased)
        );
        assert_eq!(rules.repurchase_window_ms("groceryx"), 2_592_000_000);
    }

    #[test]
    fn out_of_stock_inactive_unknown_excluded_and_filtered_items_are_dropped() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let none = FastMap::default();
        let l = limits(&none, &[], &["x"], Scenario::Home);
        assert_eq!(
            rules.drop_reason("a", Some(&item("b", "", 0)), &l),
            Some(Drop::OutOfStock)
        );
        let inactive = ItemRecord {
            active: false,
            ..item("b", "", 5)
        };
        assert_eq!(
            rules.drop_reason("a", Some(&inactive), &l),
            Some(Drop::Inactive)
        );
        assert_eq!(rules.drop_reason("a", None, &l), Some(Drop::Unknown));
        assert_eq!(
            rules.drop_reason("x", Some(&item("b", "", 5)), &l),
            Some(Drop::Excluded)
        );
        let filtered = RequestLimits {
            category: "electronics/audio",
            ..limits(&none, &[], &[], Scenario::Home)
        };
        let audio = item("electronics/audio/headphones", "", 5);
        let books = item("electronics/audiobooks", "", 5);
        assert_eq!(rules.drop_reason("a", Some(&audio), &filtered), None);
        assert_eq!(
            rules.drop_reason("a", Some(&books), &filtered),
            Some(Drop::Category)
        );
    }

    #[test]
    fn cart_items_are_dropped_on_home_and_item_page_only() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let none = FastMap::default();
        let cart = vec!["a".to_owned()];
        let r = item("b", "", 5);
        for (scenario, dropped) in [
            (Scenario::Home, true),
            (Scenario::ItemPage, true),
            (Scenario::Cart, false),
            (Scenario::PostPurchase, false),
        ] {
            let l = limits(&none, &cart, &[], scenario);
            assert_eq!(
                rules.drop_reason("a", Some(&r), &l).is_some(),
                dropped,
                "{scenario:?}"
            );
        }
    }

    #[test]
    fn diversity_caps_categories_and_brands_in_rank_order() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let records: Vec<ItemRecord> = (0..10)
            .map(|n| {
                item(
                    if n < 6 { "c/x" } else { "c/y" },
                    if n % 2 == 0 { "B" } else { "" },
                    1,
                )
            })
            .collect();
        let kept = rules.diversify(records.iter().enumerate(), 10);
        // Items 0-5 are in c/x, 6-9 in c/y; even ones are brand B. c/x stops at 4 items
        // (0-3); B stops at 3 items (0, 2, 6), so 8 is skipped.
        assert_eq!(kept, [0, 1, 2, 3, 6, 7, 9]);
        assert_eq!(rules.diversify(records.iter().enumerate(), 2), [0, 1]);
    }

    #[test]
    fn boosts_multiply_when_every_condition_holds() {
        let rules = Rules::parse(&format!(
            "{SHIPPED}\n[[boosts]]\ncategory = \"c\"\nbrand = \"B\"\nfactor = 2.0\n"
        ))
        .unwrap();
        let b = item("c/x", "B", 1);
        assert!((rules.boost(&b, true) - 2.2).abs() < 1e-12);
        assert!((rules.boost(&b, false) - 2.0).abs() < 1e-12);
        assert_eq!(rules.boost(&item("d", "B", 1), false), 1.0);
    }
}
