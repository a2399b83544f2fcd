//! The rows of the strategy table: which strategies each trains, which are model averages (FMA), and the
//! seed's published ERNIE 3.0 base figures.
//!
//! A row's `key` is its one spelling everywhere: `--rows`, cell directory names (`cells/<key>-seed<k>/`),
//! JSON and CSV. `label` is the table's wording, `short` the chart's.

use anyhow::{bail, Result};

#[derive(Debug, PartialEq)]
pub struct Row {
    pub key: &'static str,
    pub label: &'static str,
    pub short: &'static str,
    /// `--strategy` value ("" = none).
    pub strategies: &'static str,
    /// A parameter average of the parent row's models (the training row with the same strategies).
    pub fma: bool,
    /// Published ERNIE 3.0 base dev accuracy (%): (IFLYTEK, AFQMC).
    pub published: (Option<f64>, Option<f64>),
}

pub const ROWS: &[Row] = &[
    Row {
        key: "base",
        label: "base",
        short: "base",
        strategies: "",
        fma: false,
        published: (Some(61.14), Some(76.11)),
    },
    Row {
        key: "fma",
        label: "+fma",
        short: "+fma",
        strategies: "",
        fma: true,
        published: (Some(61.52), Some(76.90)),
    },
    Row {
        key: "adv",
        label: "+adv",
        short: "+adv",
        strategies: "adv",
        fma: false,
        published: (Some(61.83), Some(76.39)),
    },
    Row {
        key: "rdrop",
        label: "+rdrop",
        short: "+rdrop",
        strategies: "rdrop",
        fma: false,
        published: (Some(61.37), Some(76.30)),
    },
    Row {
        key: "layer-decay",
        label: "+layer_decay",
        short: "+ld",
        strategies: "layer-decay",
        fma: false,
        published: (Some(61.56), Some(76.44)),
    },
    Row {
        key: "adv+layer-decay",
        label: "adv+layer_decay",
        short: "adv+ld",
        strategies: "adv,layer-decay",
        fma: false,
        published: (None, None),
    },
    Row {
        key: "adv+layer-decay+fma",
        label: "adv+layer_decay+fma",
        short: "adv+ld+fma",
        strategies: "adv,layer-decay",
        fma: true,
        published: (Some(63.29), Some(77.36)),
    },
    Row {
        key: "rdrop+layer-decay",
        label: "rdrop+layer_decay",
        short: "rdrop+ld",
        strategies: "rdrop,layer-decay",
        fma: false,
        published: (None, None),
    },
    Row {
        key: "rdrop+layer-decay+fma",
        label: "rdrop+layer_decay+fma",
        short: "rdrop+ld+fma",
        strategies: "rdrop,layer-decay",
        fma: true,
        published: (Some(62.37), Some(77.22)),
    },
];

impl Row {
    /// The training row whose models an FMA row averages (itself for a training row).
    pub fn parent(&self) -> &'static Row {
        ROWS.iter()
            .find(|r| !r.fma && r.strategies == self.strategies)
            .expect("every FMA row has a parent")
    }

    pub fn published_for(&self, task: &str) -> Option<f64> {
        match task {
            "iflytek" => self.published.0,
            "afqmc" => self.published.1,
            _ => None,
        }
    }

    pub fn index(&self) -> usize {
        ROWS.iter().position(|r| r.key == self.key).expect("a row of ROWS")
    }
}

pub fn base() -> &'static Row {
    &ROWS[0]
}

/// `+layer_decay`, `adv+layer_decay+fma`, `Layer-Decay` ... -> the key spelling (`layer-decay`, ...).
pub fn normalize(name: &str) -> String {
    name.trim()
        .trim_start_matches('+')
        .replace('_', "-")
        .to_ascii_lowercase()
}

pub fn by_key(name: &str) -> Option<&'static Row> {
    let k = normalize(name);
    ROWS.iter().find(|r| r.key == k)
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
            bail!(
                "--rows: no row `{w}`; rows are {}",
                ROWS.iter().map(|r| r.key).collect::<Vec<_>>().join(", ")
            )
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
    fn keys_accept_the_old_labels() {
        assert_eq!(by_key("+layer_decay").unwrap().key, "layer-decay");
        assert_eq!(by_key("adv+layer_decay+fma").unwrap().key, "adv+layer-decay+fma");
        assert_eq!(by_key("+fma").unwrap().key, "fma");
        assert!(by_key("nope").is_none());
        for r in ROWS {
            assert_eq!(by_key(r.label).unwrap(), r, "{}", r.label);
            assert_eq!(by_key(r.key).unwrap(), r);
        }
    }

    #[test]
    fn selection_adds_base_and_parents_in_table_order() {
        let keys = |v: Vec<&Row>| v.iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(select(Some(&["adv+layer-decay+fma".into()])).unwrap()),
            ["base", "adv+layer-decay", "adv+layer-decay+fma"]
        );
        assert_eq!(
            keys(select(Some(&["+fma".into(), "adv".into()])).unwrap()),
            ["base", "fma", "adv"]
        );
        assert_eq!(select(None).unwrap().len(), ROWS.len());
        assert!(select(Some(&["x".into()])).is_err());
        assert_eq!(
            by_key("rdrop+layer-decay+fma").unwrap().parent().key,
            "rdrop+layer-decay"
        );
        assert_eq!(by_key("fma").unwrap().parent().key, "base");
    }
}
