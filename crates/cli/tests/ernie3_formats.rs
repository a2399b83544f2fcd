//! The binary on the ERNIE 3.0 checkpoint formats (tests/fixtures/ernie3, see
//! scripts/make_ernie_fixtures.py): `train` runs from a PyTorch `pytorch_model.bin` and a PaddleNLP
//! `model_state.pdparams` as from HF safetensors, `encode` gives the same numbers from each, and `convert`
//! writes a HF directory that gives them too; bad pickles are errors, never panics.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_fails, assert_ok, json, run, s, Work};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ernie3").join(rel)
}

/// `train` from `model` for `steps` updates of 8 examples, scored on the training file.
fn train_args(w: &Work, model: &Path, train: &Path, out: &Path, steps: &str) -> Vec<String> {
    w.train_args_for(model, train, Some(train), out, &["--batch-size", "8", "--max-steps", steps])
}

#[test]
fn train_runs_two_steps_from_each_format() {
    let w = Work::new();
    let train = w.task("train.jsonl", 24, 1);
    // base: all three formats (protocol 2 pdparams, flat model_config.json; a strided tensor in the
    // .bin); mini: legacy PyTorch file; micro: unprefixed Paddle names; medium: nested model_config.json,
    // a `token<TAB>id` vocab.txt, and gamma/beta names in the .bin.
    let cases = ["base/hf", "base/torch", "base/paddle", "mini/torch", "micro/paddle", "medium/paddle", "medium/torch"];
    for case in cases {
        let out = w.path(&format!("run-{}", case.replace('/', "-")));
        assert_ok(&run(&train_args(&w, &fixture(case), &train, &out, "2")));
        let m = json(&out.join("metrics.json"));
        assert_eq!(m["steps"].as_u64(), Some(2), "{case}");
        let cfg = json(&out.join("config.json"));
        assert_eq!(cfg["model_type"], "ernie", "{case}");
        assert_eq!(cfg["layer_norm_eps"], 1e-5, "{case}");
        assert_eq!(cfg["use_task_id"], true, "{case}");
        // The checkpoint's tokenizer is HF's: PaddleNLP's ErnieTokenizer class and tab ids are rewritten.
        let vocab = std::fs::read_to_string(out.join("vocab.txt")).unwrap();
        assert!(vocab.starts_with("[PAD]\n[CLS]\n") && !vocab.contains('\t'), "{case}");
        if case.ends_with("paddle") {
            assert_eq!(json(&out.join("tokenizer_config.json"))["tokenizer_class"], "BertTokenizer", "{case}");
            // PaddleNLP's own config keys stay out of the HF config.
            assert!(cfg.get("num_classes").is_none() && cfg.get("paddlenlp_version").is_none(), "{case}: {cfg}");
        }
        // And the fine-tuned checkpoint is an ernie-ft checkpoint like any other.
        assert_ok(&run(&["eval", "--model", &s(&out), "--dev", &s(&train), "--threads", "2"]));
    }
}

#[test]
fn encode_and_convert_agree_across_formats() {
    let w = Work::new();
    let input =
        w.write("in.jsonl", "{\"sentence\": \"我是中国人\"}\n{\"sentence1\": \"他说\", \"sentence2\": \"HELLO 的\"}\n");
    let encode = |model: &Path, name: &str| -> String {
        let out = w.path(name);
        assert_ok(&run(&[
            "encode",
            "--model",
            &s(model),
            "--input",
            &s(&input),
            "--output",
            &s(&out),
            "--threads",
            "2",
        ]));
        std::fs::read_to_string(out).unwrap()
    };
    let reference = encode(&fixture("nano/hf"), "hf.jsonl");
    for case in ["nano/torch", "nano/paddle"] {
        assert_eq!(encode(&fixture(case), "x.jsonl"), reference, "{case}");
        let out = w.path(&format!("conv-{}", case.replace('/', "-")));
        let r = run(&["convert", "--from", &s(&fixture(case)), "--out", &s(&out)]);
        assert_ok(&r);
        let err = common::stderr(&r);
        assert!(err.contains("layer_norm_eps 1e-5") && err.contains("3-label classifier"), "{err}");
        assert_eq!(encode(&out, "y.jsonl"), reference, "{case} converted");
        // Not over an existing model.
        let again = assert_fails(&run(&["convert", "--from", &s(&fixture(case)), "--out", &s(&out)]));
        assert!(again.contains("already exists"), "{again}");
    }
}

/// A model directory `name` with `files` copied from fixture `from`.
fn copy_model(w: &Work, name: &str, from: &str, files: &[&str]) -> PathBuf {
    let model = w.path(name);
    std::fs::create_dir(&model).unwrap();
    for f in files {
        std::fs::copy(fixture(from).join(f), model.join(f)).unwrap();
    }
    model
}

#[test]
fn bad_pickles_are_errors_naming_file_and_cause() {
    let w = Work::new();
    let input = w.write("in.jsonl", "{\"sentence\": \"我\"}\n");
    let encode_fails = |model: &Path| {
        assert_fails(&run(&["encode", "--model", &s(model), "--input", &s(&input), "--output", &s(&w.path("o.jsonl"))]))
    };
    // A pickle that asks for os.system: refused by name, nothing written.
    let model = copy_model(&w, "evil", "micro/paddle", &["config.json", "vocab.txt"]);
    std::fs::write(model.join("model_state.pdparams"), b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00idR.").unwrap();
    let err = encode_fails(&model);
    assert!(err.contains("model_state.pdparams") && err.contains("os.system"), "{err}");
    let err = assert_fails(&run(&["convert", "--from", &s(&model), "--out", &s(&w.path("evil-hf"))]));
    assert!(err.contains("model_state.pdparams") && err.contains("os.system"), "{err}");
    assert!(!w.path("evil-hf").join("model.safetensors").exists());
    // Half a pytorch_model.bin.
    let model = copy_model(&w, "cut", "base/torch", &["config.json", "vocab.txt"]);
    let bin = std::fs::read(fixture("base/torch/pytorch_model.bin")).unwrap();
    std::fs::write(model.join("pytorch_model.bin"), &bin[..bin.len() / 2]).unwrap();
    let err = encode_fails(&model);
    assert!(err.contains("pytorch_model.bin"), "{err}");
}

#[test]
fn resuming_checks_the_paddle_files() {
    // A run from a PaddleNLP directory records its config.json and model_state.pdparams: resumption
    // with either changed is refused, naming it.
    let w = Work::new();
    let train = w.task("train.jsonl", 24, 2);
    let model = copy_model(
        &w,
        "paddle",
        "micro/paddle",
        &["config.json", "model_state.pdparams", "vocab.txt", "tokenizer_config.json"],
    );
    let out = w.path("run");
    let mut args = train_args(&w, &model, &train, &out, "3");
    args.extend(["--save-every", "1"].map(String::from));
    let cut = common::command(&args).env("ERNIE_FT_TEST_KILL", "step:2").output().unwrap();
    assert!(!cut.status.success() && out.join("checkpoints").is_dir(), "{}", common::stderr(&cut));
    let mut resume = args.clone();
    resume.extend(["--resume", "auto"].map(String::from));

    let pd = model.join("model_state.pdparams");
    let original = std::fs::read(&pd).unwrap();
    let mut longer = original.clone();
    longer.extend_from_slice(b"\0");
    std::fs::write(&pd, &longer).unwrap();
    let err = assert_fails(&run(&resume));
    assert!(err.contains("model_state.pdparams") && err.contains("differs"), "{err}");
    std::fs::write(&pd, &original).unwrap();

    let cfg = model.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen('{', "{\"note\": 1, ", 1)).unwrap();
    let err = assert_fails(&run(&resume));
    assert!(err.contains("config.json") && err.contains("differs"), "{err}");
    std::fs::write(&cfg, text).unwrap();

    let done = run(&resume);
    assert_ok(&done);
    assert!(common::stderr(&done).contains("resum"), "{}", common::stderr(&done));
    assert_eq!(json(&out.join("metrics.json"))["steps"].as_u64(), Some(3));
}
