//! The strategies' one vocabulary: the `--strategy` values, the names in reports and metrics, the row keys
//! and cell directory names of campaigns all spell a strategy as [`Strategy::name`] does.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A fine-tuning strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Noise on every layer's pre-softmax attention scores ([`crate::adv`]).
    Adv,
    /// The batch duplicated, symmetric KL between the two predictions ([`crate::rdrop`]).
    Rdrop,
    /// Per-layer learning-rate multipliers ([`crate::layer_decay`]).
    LayerDecay,
    /// Parameter average of fine-tuned models ([`crate::fma`]); applied after training, not by `train`.
    Fma,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [Strategy::Adv, Strategy::Rdrop, Strategy::LayerDecay, Strategy::Fma];
    /// The strategies a training run applies (FMA averages finished runs).
    pub const TRAINING: [Strategy; 3] = [Strategy::Adv, Strategy::Rdrop, Strategy::LayerDecay];

    /// The one spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Adv => "adv",
            Strategy::Rdrop => "rdrop",
            Strategy::LayerDecay => "layer-decay",
            Strategy::Fma => "fma",
        }
    }

    /// One line for `--help` and reports.
    pub const fn describe(self) -> &'static str {
        match self {
            Strategy::Adv => "noise on every layer's pre-softmax attention scores (3 forwards + 2 backwards per step)",
            Strategy::Rdrop => "the batch duplicated, symmetric KL between the two predictions",
            Strategy::LayerDecay => "lr * rate ** (n_layers + 2 - depth) per parameter",
            Strategy::Fma => "parameter average of fine-tuned models",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a strategy (the message lists the names).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy {0:?}: one of {names}", names = Strategy::ALL.map(Strategy::name).join(", "))]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse_and_serde() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.name()));
        }
        let e = "layer_decay".parse::<Strategy>().unwrap_err().to_string();
        assert!(e.contains("layer_decay") && e.contains("layer-decay"), "{e}");
    }
}
