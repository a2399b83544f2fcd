//! `ernie-ft`: the command line of ernie-ft. It parses flags, calls the library crates and prints; one
//! module per subcommand (`encode`, `train`, `eval`, `predict`, `average`, `bench`, `convert`); flags shared
//! between subcommands (task, model, max length, device, threads) live in [`common`], file helpers in [`io`].

mod average;
mod bench;
mod common;
mod convert;
mod encode;
mod eval;
mod io;
mod predict;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fine-tune and run BERT / ERNIE-style Chinese encoders.
#[derive(Parser, Debug)]
#[command(name = "ernie-ft", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sentence embeddings (first-token and mean pooling) for every line of a JSON-lines file
    ///
    /// Each output line, in input order, is {"cls": [...], "mean": [...]}: the final hidden state of the
    /// first token, and the mean of the final hidden states over the real (non-padding) tokens.
    Encode(encode::EncodeArgs),
    /// Fine-tune on a CLUE-style task (with --strategy adv,rdrop,layer-decay), evaluating on dev
    Train(Box<train::TrainArgs>),
    /// Accuracy and macro-F1 of a checkpoint on a labelled file
    Eval(eval::EvalArgs),
    /// Predict a file and write the CLUE submission format ({"id": ..., "label": "..."} per line)
    Predict(predict::PredictArgs),
    /// Average fine-tuned checkpoints (FMA): uniform, weighted, or greedy soup on a held-out file
    Average(average::AverageArgs),
    /// Time training steps (or inference) on random weights of a named shape; prints one JSON line
    ///
    /// Median step time, samples/s, peak memory, model FLOPs per step, achieved TFLOP/s and MFU. The
    /// FLOP count is documented in crates/cli/src/bench.rs.
    Bench(Box<bench::BenchArgs>),
    /// Convert a model directory (PyTorch pytorch_model.bin, PaddleNLP model_state.pdparams, or HF
    /// safetensors) into a HF transformers directory (safetensors, config.json, tokenizer files)
    ///
    /// `train` and `encode` also read those formats directly (`--model`); converting once saves reading
    /// a pickle at each start. Pickles are read without executing anything (README, "Real ERNIE 3.0
    /// weights").
    Convert(convert::ConvertArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Encode(args) => encode::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Average(args) => average::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Convert(args) => convert::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<ernie_train::Interrupted>() {
            Some(stop) => {
                eprintln!("{stop}");
                let mut args: Vec<String> = std::env::args().skip(1).collect();
                if !args.iter().any(|a| a == "--resume" || a.starts_with("--resume=")) {
                    let run = ernie_train::state::run_dir_of(&stop.checkpoint).unwrap_or_default();
                    args.extend(["--resume".into(), run.display().to_string()]);
                }
                eprintln!("resume with: ernie-ft {}", args.join(" "));
                ExitCode::from((128 + stop.signal).min(255) as u8)
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
