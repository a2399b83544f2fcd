//! Every table committed under results/ is what `--report-only` writes from the cells committed beside it:
//! a fresh clone rebuilds it. This is the campaign's promise that the table is evidence, not an edited
//! file; it fails when a cell is committed without its rebuilt table, or when a change to the report code
//! leaves a committed table behind (rebuild it with the command its Settings name, plus `--report-only`).
//!
//! The committed state (git HEAD) is checked, not the working tree, where a campaign may be running.
//! Compared: table.csv and chart.svg byte for byte, table.json and table.md without what describes only
//! the invocation that wrote them (its machine, commit, job count, command line, and the absolute paths of
//! the model and data, whose content hashes are compared).

use ernie_testkit::skipped;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

/// `git ARGS` in the workspace; None where git or the repository is missing.
fn git(args: &[&str]) -> Option<Vec<u8>> {
    let o = Command::new("git").args(args).current_dir(root()).stderr(Stdio::null()).output().ok()?;
    o.status.success().then_some(o.stdout)
}

/// The campaigns of a `results/` folder: its subfolders holding a table.json and cells.
fn campaigns_in(results: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(results)
        .unwrap_or_else(|e| panic!("{}: {e}", results.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|d| results.join(d).join("table.json").is_file() && results.join(d).join("cells").is_dir())
        .collect();
    v.sort();
    v
}

/// The `xtask` arguments that rebuild a table written with `argv`: the same command, reading the cells in
/// `out`, training nothing.
fn rebuild_args(task: &str, argv: &[String], out: &Path) -> Vec<String> {
    let command = match task {
        "iflytek" | "afqmc" => format!("bench-{task}"),
        _ => "bench-task".into(),
    };
    let mut args = vec![command];
    let (own, train) = match argv.iter().position(|a| a == "--") {
        Some(i) => (&argv[..i], &argv[i..]),
        None => (argv, &argv[argv.len()..]),
    };
    let mut it = own.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--report-only" | "--fresh" | "--keep-checkpoints" => {}
            "--out" | "--jobs" | "--threads" | "--gpus" | "--save-every" => {
                it.next();
            }
            _ if ["--out=", "--jobs=", "--threads=", "--gpus=", "--save-every="].iter().any(|p| a.starts_with(p)) => {}
            _ => args.push(a.clone()),
        }
    }
    args.extend(["--report-only".into(), "--out".into(), out.display().to_string()]);
    args.extend(train.iter().cloned());
    args
}

/// table.json without what describes only the invocation that wrote it.
fn comparable_json(mut v: Value) -> Value {
    let s = &mut v["settings"];
    let o = s.as_object_mut().expect("table.json has settings");
    for k in ["machine", "jobs", "threads_per_job", "commit", "dirty", "flags"] {
        o.remove(k);
    }
    if let Some(n) = s["numerics"].as_object_mut() {
        n.remove("fingerprint_of_this_build");
    }
    if let Some(m) = s["model"].as_object_mut() {
        m.remove("path");
    }
    if let Some(d) = s["data"].as_array_mut() {
        for f in d.iter_mut().filter_map(Value::as_object_mut) {
            f.remove("path");
        }
    }
    v
}

/// table.md without the Settings lines that describe only the invocation (the model and data lines name
/// absolute paths; their hashes are compared in table.json).
fn comparable_md(md: &str) -> String {
    const INVOCATION: [&str; 8] = [
        "- Machine of this invocation",
        "- Device ",
        "- Commit ",
        "- Command:",
        "- Model `",
        "- train `",
        "- dev `",
        "- labels `",
    ];
    md.lines()
        .filter(|l| !INVOCATION.iter().any(|p| l.starts_with(p)))
        .map(|l| match l.find("; this build: ") {
            Some(i) if l.starts_with("- Numerics fingerprint") => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn committed_tables_rebuild_from_their_committed_cells() {
    let name = "committed_tables_rebuild_from_their_committed_cells";
    let Some(tar) = git(&["archive", "--format=tar", "HEAD", "results"]) else {
        skipped!("SKIPPED (not a git checkout, or no git): {name}");
        return;
    };
    if ernie_data::paths::resolve_model_dir(None).is_err() || ernie_data::paths::resolve_data_dir(None).is_err() {
        skipped!("SKIPPED (needs ../shared): {name}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let head = tmp.path().join("head");
    std::fs::create_dir(&head).unwrap();
    let mut untar = Command::new("tar").arg("-x").arg("-C").arg(&head).stdin(Stdio::piped()).spawn().expect("tar");
    std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &tar).unwrap();
    assert!(untar.wait().unwrap().success(), "tar -x of HEAD's results/ failed");
    let campaigns = campaigns_in(&head.join("results"));
    assert!(campaigns.iter().any(|c| c == "iflytek"), "no committed IFLYTEK campaign in {campaigns:?}");

    let mut failures = vec![];
    for c in &campaigns {
        let committed = head.join("results").join(c);
        let out = tmp.path().join("rebuilt").join(c);
        std::fs::create_dir_all(&out).unwrap();
        // The cells only: everything else in `out` is written by the rebuild.
        let st = Command::new("cp").arg("-R").arg(committed.join("cells")).arg(&out).status().unwrap();
        assert!(st.success(), "copying {}'s cells", c);
        let table: Value = serde_json::from_slice(&read(&committed.join("table.json"))).unwrap();
        let task = table["settings"]["task"].as_str().expect("settings.task");
        let argv: Vec<String> = serde_json::from_value(table["settings"]["flags"]["campaign"].clone()).unwrap();
        let args = rebuild_args(task, &argv, &out);
        let o = Command::new(XTASK).args(&args).output().expect("run xtask");
        if !o.status.success() {
            failures.push(format!(
                "results/{c}: xtask {} failed: {}\n{}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
            continue;
        }
        let json = |p: &Path| comparable_json(serde_json::from_slice(&read(p)).unwrap());
        let md = |p: &Path| comparable_md(&String::from_utf8(read(p)).unwrap());
        let checks: [(&str, bool); 4] = [
            ("table.csv", read(&committed.join("table.csv")) == read(&out.join("table.csv"))),
            ("chart.svg", read(&committed.join("chart.svg")) == read(&out.join("chart.svg"))),
            ("table.json", json(&committed.join("table.json")) == json(&out.join("table.json"))),
            ("table.md", md(&committed.join("table.md")) == md(&out.join("table.md"))),
        ];
        for (file, same) in checks {
            if !same {
                failures.push(format!(
                    "results/{c}/{file} is not what `xtask {}` writes from the committed cells (diff it against {})",
                    args.join(" "),
                    out.join(file).display()
                ));
            }
        }
    }
    if !failures.is_empty() {
        // Keep the rebuilt tables for the diff the message asks for.
        let kept = tmp.keep();
        panic!("{} (rebuilt tables kept in {})", failures.join("\n"), kept.display());
    }
}

#[test]
fn rebuild_args_keep_the_campaign_and_drop_the_invocation() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let out = Path::new("/o");
    assert_eq!(
        rebuild_args("iflytek", &s(&["--lr", "2e-4", "--jobs", "2", "--report-only", "--", "--epochs", "6"]), out),
        s(&["bench-iflytek", "--lr", "2e-4", "--report-only", "--out", "/o", "--", "--epochs", "6"])
    );
    assert_eq!(
        rebuild_args("afqmc", &s(&["--quick", "--fresh", "--out=x", "--threads", "4"]), out),
        s(&["bench-afqmc", "--quick", "--report-only", "--out", "/o"])
    );
    assert_eq!(
        rebuild_args("tnews", &s(&["--task", "tnews", "--out", "r/t", "--", "--jobs", "3"]), out),
        s(&["bench-task", "--task", "tnews", "--report-only", "--out", "/o", "--", "--jobs", "3"])
    );
}

#[test]
fn invocation_lines_are_not_compared() {
    let a = "| base | 1 |\n- Machine of this invocation: A\n- Commit 1\n- Numerics fingerprint of the cells: f (x); this build: f\n- Hosts";
    let b = "| base | 1 |\n- Machine of this invocation: B\n- Commit 2\n- Numerics fingerprint of the cells: f (x)\n- Hosts";
    assert_eq!(comparable_md(a), comparable_md(b));
    assert_ne!(comparable_md(a), comparable_md(&a.replace("| 1 |", "| 2 |")));
}
