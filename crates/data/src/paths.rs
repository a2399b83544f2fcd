//! Where the model and the data live when the user does not say.
//!
//! Order: explicit flag, then environment variable, then a `shared/` folder next to the checkout, found
//! from the current directory (and each of its parents, since `cargo test` runs in the crate folder)
//! and from the workspace this crate was compiled in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the model directory.
pub const MODEL_ENV: &str = "ERNIE_FT_MODEL";
/// Environment variable naming the data directory (the folder holding `iflytek/`, `afqmc/`, ...).
pub const DATA_ENV: &str = "ERNIE_FT_DATA";

const MODEL_REL: &str = "shared/models/e5-small-zh";
const DATA_REL: &str = "shared/data";

/// The model directory: `flag`, else `$ERNIE_FT_MODEL`, else `<dir>/../shared/models/e5-small-zh`.
pub fn resolve_model_dir(flag: Option<&Path>) -> Result<PathBuf> {
    resolve(&Search {
        what: "model directory",
        env_var: MODEL_ENV,
        rel: MODEL_REL,
        flag,
        env_value: std::env::var_os(MODEL_ENV),
        cwd: std::env::current_dir().ok(),
        build_root: compile_time_root(),
    })
}

/// The data directory: `flag`, else `$ERNIE_FT_DATA`, else `<dir>/../shared/data`.
pub fn resolve_data_dir(flag: Option<&Path>) -> Result<PathBuf> {
    resolve(&Search {
        what: "data directory",
        env_var: DATA_ENV,
        rel: DATA_REL,
        flag,
        env_value: std::env::var_os(DATA_ENV),
        cwd: std::env::current_dir().ok(),
        build_root: compile_time_root(),
    })
}

/// The workspace root at compile time (this crate lives in `<root>/crates/data`).
fn compile_time_root() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).map(Path::to_path_buf)
}

/// All inputs of a search, so that tests need not touch the process environment.
pub(crate) struct Search<'a> {
    pub what: &'static str,
    pub env_var: &'static str,
    pub rel: &'static str,
    pub flag: Option<&'a Path>,
    pub env_value: Option<OsString>,
    pub cwd: Option<PathBuf>,
    pub build_root: Option<PathBuf>,
}

pub(crate) fn resolve(s: &Search<'_>) -> Result<PathBuf> {
    // An explicit choice that is wrong is an error, never silently replaced by a default.
    if let Some(flag) = s.flag {
        return existing_dir(flag);
    }
    if let Some(value) = s.env_value.as_ref().filter(|v| !v.is_empty()) {
        return existing_dir(Path::new(value));
    }
    let candidates = candidates(s);
    if let Some(found) = candidates.iter().find(|p| p.is_dir()) {
        return Ok(found.clone());
    }
    Err(Error::NotFound {
        what: s.what,
        searched: candidates,
        hint: format!("pass the {} explicitly or set {}", s.what, s.env_var),
    })
}

/// `<a>/../<rel>` for every ancestor `a` of the current dir that is a checkout (holds `Cargo.toml` or
/// `.git`: `shared/` lives beside the checkout, not beside any folder above it), then for the
/// compile-time workspace root.
fn candidates(s: &Search<'_>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let is_checkout = |a: &Path| a.join("Cargo.toml").is_file() || a.join(".git").exists();
    let roots = s.cwd.iter().flat_map(|c| c.ancestors()).filter(|a| is_checkout(a)).chain(s.build_root.as_deref());
    for root in roots {
        if let Some(parent) = root.parent() {
            let candidate = parent.join(s.rel);
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

fn existing_dir(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::MissingDir { path: path.to_path_buf() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search<'a>(flag: Option<&'a Path>, env: Option<&str>, cwd: Option<&Path>, root: Option<&Path>) -> Search<'a> {
        Search {
            what: "model directory",
            env_var: MODEL_ENV,
            rel: MODEL_REL,
            flag,
            env_value: env.map(OsString::from),
            cwd: cwd.map(Path::to_path_buf),
            build_root: root.map(Path::to_path_buf),
        }
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let checkout = tmp.path().join("main/crates/data");
        let model = tmp.path().join(MODEL_REL);
        std::fs::create_dir_all(&checkout).expect("mkdir");
        std::fs::write(tmp.path().join("main/Cargo.toml"), "").expect("write");
        std::fs::create_dir_all(&model).expect("mkdir");
        (tmp, checkout, model)
    }

    #[test]
    fn flag_wins_and_must_exist() {
        let (tmp, checkout, model) = tree();
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        let env = model.to_string_lossy().into_owned();
        let got = resolve(&search(Some(&other), Some(&env), Some(&checkout), None));
        assert_eq!(got.expect("flag"), other);
        let missing = tmp.path().join("nope");
        let err = resolve(&search(Some(&missing), Some(&env), Some(&checkout), None)).expect_err("missing flag dir");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn env_before_search_and_must_exist() {
        let (tmp, checkout, _model) = tree();
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        let env = other.to_string_lossy().into_owned();
        assert_eq!(resolve(&search(None, Some(&env), Some(&checkout), None)).expect("env"), other);
        let bad = tmp.path().join("gone").to_string_lossy().into_owned();
        assert!(resolve(&search(None, Some(&bad), Some(&checkout), None)).is_err());
        // An empty variable counts as unset.
        assert!(resolve(&search(None, Some(""), Some(&checkout), None)).is_ok());
    }

    #[test]
    fn found_from_a_nested_current_dir() {
        let (_tmp, checkout, model) = tree();
        assert_eq!(resolve(&search(None, None, Some(&checkout), None)).expect("search"), model);
    }

    #[test]
    fn found_from_the_build_root() {
        let (tmp, checkout, model) = tree();
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("main");
        assert_eq!(resolve(&search(None, None, Some(elsewhere.path()), Some(&root))).expect("search"), model);
        drop(checkout);
    }

    #[test]
    fn not_found_lists_every_candidate() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let cwd = a.path().join("x/y");
        std::fs::create_dir_all(&cwd).expect("mkdir");
        std::fs::write(cwd.join("Cargo.toml"), "").expect("write");
        std::fs::write(a.path().join("x/Cargo.toml"), "").expect("write");
        let root = b.path().join("ws");
        let err = resolve(&search(None, None, Some(&cwd), Some(&root))).expect_err("nothing");
        let msg = err.to_string();
        for c in [a.path().join("x").join(MODEL_REL), a.path().join(MODEL_REL), b.path().join(MODEL_REL)] {
            assert!(msg.contains(&c.display().to_string()), "{msg}");
        }
        assert!(msg.contains(MODEL_ENV), "{msg}");
    }
}
