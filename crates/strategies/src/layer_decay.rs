//! Layer-wise learning-rate decay: `lr(param) = lr * decay_rate ** (n_layers + 2 - depth)` with depth 0 for
//! the embeddings (tables and their LayerNorm), `i + 1` for encoder layer `i`, and `n_layers + 2` for the
//! pooler and classifier (multiplier 1). Lower layers hold more general features and move less.

use ernie_model::{ParamGroup, ParamSpec};

pub const DEFAULT_DECAY_RATE: f64 = 0.8;

/// The depth of a parameter in the formula above.
pub fn depth(group: ParamGroup, n_layers: usize) -> usize {
    match group {
        ParamGroup::Embeddings => 0,
        ParamGroup::Layer(i) => i + 1,
        ParamGroup::Head => n_layers + 2,
    }
}

/// The lr multiplier of every parameter, in parameter order.
pub fn multipliers(specs: &[ParamSpec], n_layers: usize, decay_rate: f64) -> Vec<f64> {
    specs.iter().map(|s| decay_rate.powi((n_layers + 2 - depth(s.group, n_layers)) as i32)).collect()
}

/// A printable table: one line per group (embeddings, each layer, head) with its depth and multiplier.
pub fn table(n_layers: usize, decay_rate: f64) -> String {
    let mut out = format!("layer decay {decay_rate}: lr multiplier = {decay_rate}^({n_layers} + 2 - depth)\n");
    out += &format!("  {:<16} {:>5} {:>12}\n", "group", "depth", "multiplier");
    let mut row = |name: String, d: usize| {
        out += &format!("  {:<16} {:>5} {:>12.6}\n", name, d, decay_rate.powi((n_layers + 2 - d) as i32));
    };
    row("embeddings".into(), 0);
    for i in 0..n_layers {
        row(format!("encoder.layer.{i}"), i + 1);
    }
    row("pooler+classifier".into(), n_layers + 2);
    out
}
