//! Public resolvers (the search order itself is unit-tested inside `paths.rs` without touching the
//! process environment).

mod common;

use ernie_data::{resolve_data_dir, resolve_model_dir, Error, TextTokenizer};

#[test]
fn explicit_flag_is_used_as_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(resolve_model_dir(Some(dir.path())).expect("model"), dir.path());
    assert_eq!(resolve_data_dir(Some(dir.path())).expect("data"), dir.path());
}

#[test]
fn missing_flag_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("not-here");
    let err = resolve_model_dir(Some(&missing)).expect_err("missing");
    assert!(matches!(err, Error::MissingDir { .. }));
    assert!(err.to_string().contains("not-here"), "{err}");
    assert!(resolve_data_dir(Some(&missing)).is_err());
}

#[test]
fn defaults_find_the_shared_folder() {
    let _shared = require_shared!("defaults_find_the_shared_folder");
    // An environment override, if the caller set one, takes precedence; only check the defaults.
    if std::env::var_os("ERNIE_FT_MODEL").is_none() {
        let model = resolve_model_dir(None).expect("default model dir");
        TextTokenizer::from_dir(&model).expect("default model dir holds a tokenizer");
    }
    if std::env::var_os("ERNIE_FT_DATA").is_none() {
        let data = resolve_data_dir(None).expect("default data dir");
        assert!(data.join("iflytek/dev.json").is_file(), "{}", data.display());
    }
}
