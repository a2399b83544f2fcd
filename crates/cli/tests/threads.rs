//! The thread count changes how fast training runs, never what it computes: cells of one experiment may run
//! with different `--threads` (a core given to another job, say) and still share one numerics identity.

mod common;

use common::*;

#[test]
fn thread_count_does_not_change_the_trained_weights() {
    // The real model: its GEMMs are large enough to be split between threads (the tiny model's are not).
    let Some(model) = shared_model() else {
        ernie_testkit::skipped!("SKIPPED (needs ../shared): thread_count_does_not_change_the_trained_weights");
        return;
    };
    let w = Work::new();
    let train = w.task("train.json", 32, 1);
    let dev = w.task("dev.json", 16, 2);
    let weights = |threads: &str| {
        let out = w.path(&format!("threads{threads}"));
        let mut args = w.train_args_for(
            &model,
            &train,
            Some(&dev),
            &out,
            &["--max-steps", "2", "--strategy", "adv,rdrop,layer-decay", "--no-save"],
        );
        let at = args.iter().position(|a| a == "--threads").expect("train_args_for sets --threads");
        args[at + 1] = threads.into();
        assert_ok(&run(&args));
        let m = json(&out.join("metrics.json"));
        (
            m["final_weights_blake3"].as_str().expect("final_weights_blake3 in metrics.json").to_string(),
            m["final_dev"].clone(),
        )
    };
    assert_eq!(weights("1"), weights("2"), "the final weights differ between --threads 1 and 2");
}
