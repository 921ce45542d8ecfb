//! Item embeddings (`models/item-embeddings/<version>/`: `embeddings.f32`, little-endian
//! float32 rows, each L2-normalised; `items.txt`, one item id per row; `model.json`, the
//! card with `dim`, `count` and, under `files`, the sha256 of both files) and every item's nearest
//! neighbours by inner product, found by exact search when they are loaded.
//!
//! Exact search costs n² · dim multiply-adds once at load (2000 items: 0.13 G, well under
//! a second; 20000: 13 G, tens of seconds on one core), so it is used up to
//! `models.exact_search_max_items` items and a larger file is refused. An approximate
//! index would be the next step beyond that size.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, ensure};
use serde::Deserialize;

use crate::features::FastMap;

/// The card's fields this code reads.
#[derive(Debug, Deserialize)]
struct EmbeddingsCard {
    name: String,
    version: String,
    dim: usize,
    count: usize,
    /// File name → sha256 of `embeddings.f32` and `items.txt`.
    #[serde(default)]
    files: HashMap<String, String>,
}

pub const VECTORS_FILE: &str = "embeddings.f32";
pub const ITEMS_FILE: &str = "items.txt";

/// Loaded embeddings and precomputed neighbours.
#[derive(Debug, Default)]
pub struct Embeddings {
    pub version: String,
    dim: usize,
    rows: FastMap<String, usize>,
    ids: Vec<String>,
    vectors: Vec<f32>,
    /// Row → neighbour rows with their inner product, best first (itself excluded).
    neighbours: Vec<Vec<(u32, f32)>>,
}

impl Embeddings {
    /// Loads `<root>/<name>/<version>/`, checks the card (dim, count, sha256 of both
    /// files, rows of unit length) and searches `k` neighbours per item. Blocking.
    pub fn load(
        root: &Path,
        name: &str,
        version: &str,
        k: usize,
        max_items: usize,
    ) -> anyhow::Result<Embeddings> {
        let dir = root.join(name).join(version);
        let card: EmbeddingsCard = serde_json::from_slice(
            &std::fs::read(dir.join("model.json"))
                .with_context(|| format!("no card in {}", dir.display()))?,
        )
        .context("unreadable embeddings card")?;
        ensure!(
            card.name == name && card.version == version,
            "the card names {}@{}",
            card.name,
            card.version
        );
        let vectors_bytes = std::fs::read(dir.join(VECTORS_FILE)).context("no embeddings.f32")?;
        let items_text = std::fs::read_to_string(dir.join(ITEMS_FILE)).context("no items.txt")?;
        for (file, bytes) in [
            (VECTORS_FILE, vectors_bytes.as_slice()),
            (ITEMS_FILE, items_text.as_bytes()),
        ] {
            let expected = card
                .files
                .get(file)
                .with_context(|| format!("the card has no sha256 of {file}"))?;
            let actual = funnel_model::sha256_hex(bytes);
            ensure!(
                *expected == actual,
                "{file} has sha256 {actual}, the card says {expected}"
            );
        }
        let ids: Vec<String> = items_text
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        ensure!(
            ids.len() == card.count,
            "{} items listed, the card says {}",
            ids.len(),
            card.count
        );
        ensure!(
            card.count <= max_items,
            "{} items is more than models.exact_search_max_items {max_items}",
            card.count
        );
        ensure!(
            vectors_bytes.len() == card.count * card.dim * 4,
            "embeddings.f32 is not {} x {} float32",
            card.count,
            card.dim
        );
        let vectors: Vec<f32> = vectors_bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut embeddings = Embeddings {
            version: version.to_owned(),
            dim: card.dim,
            rows: ids
                .iter()
                .enumerate()
                .map(|(n, id)| (id.clone(), n))
                .collect(),
            ids,
            vectors,
            neighbours: Vec::new(),
        };
        for row in 0..card.count {
            let norm: f32 = embeddings.vector(row).iter().map(|x| x * x).sum();
            ensure!(
                (norm - 1.0).abs() < 1e-3,
                "row {row} is not L2-normalised (|v|² = {norm})"
            );
        }
        embeddings.neighbours = (0..card.count)
            .map(|row| embeddings.search(row, k))
            .collect();
        Ok(embeddings)
    }

    fn vector(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }

    /// The `k` rows with the highest inner product with `row`, itself excluded.
    fn search(&self, row: usize, k: usize) -> Vec<(u32, f32)> {
        let v = self.vector(row);
        let mut scored: Vec<(u32, f32)> = (0..self.ids.len())
            .filter(|other| *other != row)
            .map(|other| {
                let dot = self.vector(other).iter().zip(v).map(|(a, b)| a * b).sum();
                (other as u32, dot)
            })
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&[f32]> {
        self.row(id).map(|row| self.vector_of(row))
    }

    /// The row of `id`, to keep beside the item (see [`Embeddings::vector_of`]).
    pub fn row(&self, id: &str) -> Option<u32> {
        self.rows.get(id).map(|row| *row as u32)
    }

    /// The embedding of a row [`Embeddings::row`] gave.
    pub fn vector_of(&self, row: u32) -> &[f32] {
        self.vector(row as usize)
    }

    /// The precomputed neighbours of `id`, best first.
    pub fn neighbours(&self, id: &str) -> impl Iterator<Item = (&str, f32)> {
        self.rows
            .get(id)
            .into_iter()
            .flat_map(|row| self.neighbours[*row].iter())
            .map(|(n, score)| (self.ids[*n as usize].as_str(), *score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, ids: &[&str], rows: &[[f32; 2]]) {
        std::fs::create_dir_all(dir).unwrap();
        let vectors: Vec<u8> = rows
            .iter()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let items = ids.iter().map(|i| format!("{i}\n")).collect::<String>();
        std::fs::write(dir.join(VECTORS_FILE), &vectors).unwrap();
        std::fs::write(dir.join(ITEMS_FILE), &items).unwrap();
        let card = serde_json::json!({
            "name": "emb", "version": "1", "dim": 2, "count": ids.len(),
            "files": {VECTORS_FILE: funnel_model::sha256_hex(&vectors), ITEMS_FILE: funnel_model::sha256_hex(items.as_bytes())},
        });
        std::fs::write(dir.join("model.json"), card.to_string()).unwrap();
    }

    #[test]
    fn neighbours_are_the_nearest_by_inner_product_and_a_bad_file_is_refused() {
        let root = std::env::temp_dir().join(format!("rec-emb-{}", std::process::id()));
        let s = std::f32::consts::FRAC_1_SQRT_2;
        write(
            &root.join("emb/1"),
            &["a", "b", "c"],
            &[[1.0, 0.0], [s, s], [0.0, 1.0]],
        );
        let e = Embeddings::load(&root, "emb", "1", 1, 10).unwrap();
        assert_eq!(e.neighbours("a").collect::<Vec<_>>(), [("b", s)]);
        assert_eq!(e.neighbours("b").next().unwrap().0, "a");
        assert_eq!(e.get("c"), Some(&[0.0, 1.0][..]));
        let err = Embeddings::load(&root, "emb", "1", 1, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exact_search_max_items"), "{err}");
        std::fs::write(root.join("emb/1").join(ITEMS_FILE), "a\nb\nx\n").unwrap();
        let err = Embeddings::load(&root, "emb", "1", 1, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
