//! Project automation: `cargo xtask <command> [args]` (the alias lives in .cargo/config.toml).
//!
//! Each command is a module with `pub fn run(args: &[String]) -> anyhow::Result<()>` and one line in
//! [`COMMANDS`]; nothing else needs to change to add one.

mod bench_speed;
mod campaign;
mod kernels;

use std::process::ExitCode;

type Run = fn(&[String]) -> anyhow::Result<()>;

/// (name, one-line help, entry point)
const COMMANDS: &[(&str, &str, Run)] = &[
    (
        "kernels",
        "compile every CUDA kernel with NVRTC for sm_80 and sm_90; print registers, shared memory, stack and spills; fail on errors or spills",
        kernels::run,
    ),
    (
        "bench-iflytek",
        "the strategy table on IFLYTEK as a resumable campaign of cells (row x seed): rerun to continue; --jobs N, --report-only, --quick; writes results/iflytek/",
        |a| campaign::run_command("bench-iflytek", Some("iflytek"), a),
    ),
    (
        "bench-afqmc",
        "the same on AFQMC; writes results/afqmc/ (results/afqmc-quick/ with --quick)",
        |a| campaign::run_command("bench-afqmc", Some("afqmc"), a),
    ),
    (
        "bench-task",
        "the same on any CLUE-style JSON-lines task: --task NAME --train FILE --dev FILE [-- --text-a-key K --label-key K]",
        |a| campaign::run_command("bench-task", None, a),
    ),
    ("bench-speed", "time ernie-ft bench against PyTorch eager/compile over shapes x sizes x strategies; write results/speed/", bench_speed::run),
];

fn usage() -> String {
    let mut s = String::from("usage: cargo xtask <command> [args]\n\ncommands:\n");
    for (name, help, _) in COMMANDS {
        s.push_str(&format!("  {name:<13} {help}\n"));
    }
    s.push_str("\n`cargo xtask <command> --help` for a command's options\n");
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    if matches!(cmd.as_str(), "help" | "-h" | "--help") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Some((_, _, run)) = COMMANDS.iter().find(|(name, _, _)| name == cmd) else {
        eprintln!("xtask: unknown command `{cmd}`\n");
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    match run(&args[1..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<campaign::Interrupted>() => {
            eprintln!("xtask {cmd}: {e:#}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("xtask {cmd}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
