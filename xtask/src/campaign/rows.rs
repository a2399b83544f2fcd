//! The rows of the strategy table: which strategies each trains, which are model averages (FMA), and the
//! seed's published ERNIE 3.0 base figures.
//!
//! A row is its strategies; its key, label and `--strategy` value are spelled from them with
//! [`Strategy::name`], the one spelling of the whole workspace. The key is the row's name everywhere:
//! `--rows`, cell directory names (`cells/<key>-seed<k>/`), JSON and CSV. The label is the table's wording,
//! `short` the chart's abbreviation.

use anyhow::{bail, Result};
use ernie_strategies::Strategy;

#[derive(Debug, PartialEq)]
pub struct Row {
    /// The strategies a training run applies (none: base), in `--strategy` and key order; never
    /// [`Strategy::Fma`], which is `fma`.
    pub strategies: &'static [Strategy],
    /// A parameter average ([`Strategy::Fma`]) of the parent row's models (the training row with the same
    /// strategies).
    pub fma: bool,
    /// The chart's x-axis label.
    pub short: &'static str,
    /// Published ERNIE 3.0 base dev accuracy (%): (IFLYTEK, AFQMC).
    pub published: (Option<f64>, Option<f64>),
}

pub const ROWS: &[Row] = &[
    Row { strategies: &[], fma: false, short: "base", published: (Some(61.14), Some(76.11)) },
    Row { strategies: &[], fma: true, short: "+fma", published: (Some(61.52), Some(76.90)) },
    Row { strategies: &[Strategy::Adv], fma: false, short: "+adv", published: (Some(61.83), Some(76.39)) },
    Row { strategies: &[Strategy::Rdrop], fma: false, short: "+rdrop", published: (Some(61.37), Some(76.30)) },
    Row { strategies: &[Strategy::LayerDecay], fma: false, short: "+ld", published: (Some(61.56), Some(76.44)) },
    Row { strategies: &[Strategy::Adv, Strategy::LayerDecay], fma: false, short: "adv+ld", published: (None, None) },
    Row {
        strategies: &[Strategy::Adv, Strategy::LayerDecay],
        fma: true,
        short: "adv+ld+fma",
        published: (Some(63.29), Some(77.36)),
    },
    Row {
        strategies: &[Strategy::Rdrop, Strategy::LayerDecay],
        fma: false,
        short: "rdrop+ld",
        published: (None, None),
    },
    Row {
        strategies: &[Strategy::Rdrop, Strategy::LayerDecay],
        fma: true,
        short: "rdrop+ld+fma",
        published: (Some(62.37), Some(77.22)),
    },
];

impl Row {
    /// The names of its strategies in key order, FMA last: `["adv", "layer-decay", "fma"]`.
    fn names(&self) -> impl Iterator<Item = &'static str> {
        self.strategies.iter().copied().chain(self.fma.then_some(Strategy::Fma)).map(Strategy::name)
    }

    /// `base`, `adv`, `layer-decay`, `adv+layer-decay+fma`, ...: the names joined by `+` (`base` for none).
    pub fn key(&self) -> String {
        let key = self.names().collect::<Vec<_>>().join("+");
        if key.is_empty() {
            "base".into()
        } else {
            key
        }
    }

    /// The table's wording: the key, with a leading `+` for one strategy on top of base (`+adv`, `+fma`).
    pub fn label(&self) -> String {
        match self.names().count() {
            0 => "base".into(),
            1 => format!("+{}", self.key()),
            _ => self.key(),
        }
    }

    /// The `ernie-ft train --strategy` value: the training strategies' names joined by `,` ("" for none).
    pub fn strategy_arg(&self) -> String {
        self.strategies.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
    }

    pub fn has(&self, s: Strategy) -> bool {
        self.strategies.contains(&s) || (s == Strategy::Fma && self.fma)
    }

    /// The training row whose models an FMA row averages (itself for a training row).
    pub fn parent(&self) -> &'static Row {
        ROWS.iter().find(|r| !r.fma && r.strategies == self.strategies).expect("every FMA row has a parent")
    }

    pub fn published_for(&self, task: &str) -> Option<f64> {
        match task {
            "iflytek" => self.published.0,
            "afqmc" => self.published.1,
            _ => None,
        }
    }

    pub fn index(&self) -> usize {
        ROWS.iter().position(|r| r.strategies == self.strategies && r.fma == self.fma).expect("a row of ROWS")
    }
}

pub fn base() -> &'static Row {
    &ROWS[0]
}

/// `+layer-decay`, `adv+layer_decay+fma` (the labels before the one spelling), `Layer-Decay` ... -> the key
/// spelling (`layer-decay`, ...).
pub fn normalize(name: &str) -> String {
    name.trim().trim_start_matches('+').replace('_', "-").to_ascii_lowercase()
}

pub fn by_key(name: &str) -> Option<&'static Row> {
    let k = normalize(name);
    ROWS.iter().find(|r| r.key() == k)
}

/// The rows of a campaign in table order: all of them, or the named ones plus base (the deltas and cost
/// ratios are against it) plus the parent of every FMA row named.
pub fn select(wanted: Option<&[String]>) -> Result<Vec<&'static Row>> {
    let Some(wanted) = wanted else {
        return Ok(ROWS.iter().collect());
    };
    let mut keep = vec![false; ROWS.len()];
    keep[0] = true;
    for w in wanted.iter().filter(|w| !w.trim().is_empty()) {
        let Some(r) = by_key(w) else {
            bail!("--rows: no row `{w}`; rows are {}", ROWS.iter().map(Row::key).collect::<Vec<_>>().join(", "))
        };
        keep[r.index()] = true;
        keep[r.parent().index()] = true;
    }
    Ok(ROWS.iter().zip(keep).filter(|(_, k)| *k).map(|(r, _)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_cell_directory_names_of_committed_results() {
        // cells/<key>-seed<k>/ under results/: these spellings must not change.
        assert_eq!(
            ROWS.iter().map(Row::key).collect::<Vec<_>>(),
            [
                "base",
                "fma",
                "adv",
                "rdrop",
                "layer-decay",
                "adv+layer-decay",
                "adv+layer-decay+fma",
                "rdrop+layer-decay",
                "rdrop+layer-decay+fma",
            ]
        );
        assert_eq!(
            ROWS.iter().map(Row::label).collect::<Vec<_>>(),
            [
                "base",
                "+fma",
                "+adv",
                "+rdrop",
                "+layer-decay",
                "adv+layer-decay",
                "adv+layer-decay+fma",
                "rdrop+layer-decay",
                "rdrop+layer-decay+fma",
            ]
        );
        // The --strategy values recorded in the cells' configurations.
        assert_eq!(
            ROWS.iter().map(Row::strategy_arg).collect::<Vec<_>>(),
            [
                "",
                "",
                "adv",
                "rdrop",
                "layer-decay",
                "adv,layer-decay",
                "adv,layer-decay",
                "rdrop,layer-decay",
                "rdrop,layer-decay",
            ]
        );
        for r in ROWS {
            assert!(!r.strategies.contains(&Strategy::Fma), "{}: FMA is the `fma` flag", r.key());
            assert!(r.strategies.iter().all(|s| Strategy::TRAINING.contains(s)));
        }
        assert!(by_key("adv+layer-decay+fma").unwrap().has(Strategy::Fma));
        assert!(!by_key("adv").unwrap().has(Strategy::LayerDecay));
    }

    #[test]
    fn keys_accept_the_old_labels() {
        assert_eq!(by_key("+layer_decay").unwrap().key(), "layer-decay");
        assert_eq!(by_key("adv+layer_decay+fma").unwrap().key(), "adv+layer-decay+fma");
        assert_eq!(by_key("+fma").unwrap().key(), "fma");
        assert!(by_key("nope").is_none());
        for r in ROWS {
            assert_eq!(by_key(&r.label()).unwrap(), r, "{}", r.label());
            assert_eq!(by_key(&r.key()).unwrap(), r);
        }
    }

    #[test]
    fn selection_adds_base_and_parents_in_table_order() {
        let keys = |v: Vec<&Row>| v.iter().map(|r| r.key()).collect::<Vec<_>>();
        assert_eq!(
            keys(select(Some(&["adv+layer-decay+fma".into()])).unwrap()),
            ["base", "adv+layer-decay", "adv+layer-decay+fma"]
        );
        assert_eq!(keys(select(Some(&["+fma".into(), "adv".into()])).unwrap()), ["base", "fma", "adv"]);
        assert_eq!(select(None).unwrap().len(), ROWS.len());
        assert!(select(Some(&["x".into()])).is_err());
        assert_eq!(by_key("rdrop+layer-decay+fma").unwrap().parent().key(), "rdrop+layer-decay");
        assert_eq!(by_key("fma").unwrap().parent().key(), "base");
    }
}
