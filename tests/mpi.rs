//! Data-parallel training over MPI end to end: `mpirun -np 2 gpt train` on a
//! tiny model against one process, resumed across rank counts, with ZeRO-1,
//! a rank that dies, ranks that disagree, and a NaN on one rank (the last
//! two staged with gpt's test hooks GPT_TEST_KILL_RANK and GPT_TEST_NAN_RANK).
//!
//! These need Open MPI (`mpirun`) and a gpt built with `--features mpi`,
//! which the first test to need it builds into target/mpi. Without `mpirun`
//! they say they skipped, unless `GPT_CI=1` (set by .ci/run), where they fail.
//!
//! Adam divides each gradient by its own running size, so where a gradient
//! nearly cancels, the rounding of another summation order moves its weight
//! by up to the learning rate (GPT-2's attention key bias, exactly zero in
//! exact arithmetic, is the extreme case: see tests/train_golden.rs). Runs
//! compare at 1e-6 when they sum alike: the model is microgpt's (no
//! biases), each rank runs one thread on its 2 rows, and one process runs 2
//! threads on 4 rows (2 rows each) or 1 thread on 2 micro-batches of 2 rows.
//! (Summed otherwise, as 1 thread on 4 rows, this run's weights differ by up
//! to 2e-5 of the largest, 1e-6 in L2 norm.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;
use common::{fails_with, gpt, succeeds};

/// Relative tolerance on the weights after the runs' 10 steps: f32 noise of
/// other summation orders, nothing more.
const TOL: f32 = 1e-6;

/// The gpt built with MPI, or `None` (having said so) where there is no `mpirun` outside CI.
fn mpi_gpt() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let found = Command::new("mpirun")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                assert!(
                    std::env::var("GPT_CI").as_deref() != Ok("1"),
                    "GPT_CI=1 but mpirun is missing: .ci/run installs openmpi-bin"
                );
                eprintln!("skipped: no mpirun (Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev)");
                return None;
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = root.join("target/mpi");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--features", "mpi", "--bin", "gpt", "--target-dir"])
                .arg(&target)
                .current_dir(root)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo build --features mpi failed");
            Some(target.join("debug/gpt"))
        })
        .as_deref()
}

/// `mpirun -np ranks gpt --threads 1 args…` (with `env`), killed after 5 minutes.
fn mpirun(gpt: &Path, ranks: usize, args: &[&str], env: &[(&str, &str)]) -> Output {
    let np = ranks.to_string();
    Command::new("timeout")
        .args(["300", "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", &np])
        .arg(gpt)
        .args(["--threads", "1"])
        .args(args)
        .envs(env.iter().copied())
        // Containers often forbid the cross-memory attach of shared-memory transfers.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .expect("mpirun runs")
}

/// The names file and the flags of every run: microgpt, 10 steps of 4 rows.
fn setup(dir: &Path) -> Vec<String> {
    let names: Vec<&str> = gpt::data::docs::NAMES.lines().take(200).collect();
    let data = dir.join("names.txt");
    std::fs::write(&data, names.join("\n")).unwrap();
    let flags = ["--preset", "microgpt", "--steps", "10", "--num-samples", "0", "--quiet"];
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.extend(["--data".into(), data.to_str().unwrap().into()]);
    args
}

/// `train` + the shared flags + `--out dir/name` + `extra`.
fn args<'a>(shared: &'a [String], dir: &Path, name: &str, extra: &[&'a str]) -> Vec<String> {
    let mut a = vec!["train".to_string()];
    a.extend(shared.iter().cloned());
    a.extend(["--out".into(), dir.join(name).to_str().unwrap().into()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// Every weight of the model saved in `dir`, end to end.
fn weights(dir: &Path) -> Vec<f32> {
    let model = gpt::model::Gpt::load(dir).unwrap();
    model.params.tensors.iter().flat_map(|t| t.data.clone()).collect()
}

/// Asserts the models in `a` and `b` are the same within [`TOL`] of the largest weight.
fn same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    let largest = wa.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = wa.iter().zip(&wb).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= TOL * largest,
        "{} vs {}: {:e} of the largest weight",
        a.display(),
        b.display(),
        diff / largest
    );
}

#[test]
fn two_ranks_equal_one_process_with_twice_the_rows_or_two_micro_batches_and_zero_1() {
    let Some(mpi) = mpi_gpt() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shared = setup(dir);
    succeeds(mpirun(
        mpi,
        2,
        &strs(&args(&shared, dir, "ranks", &["--batch-size", "2"])),
        &[],
    ));
    succeeds(gpt(&strs(&args(
        &shared,
        dir,
        "rows",
        &["--batch-size", "4", "--threads", "2"],
    ))));
    succeeds(gpt(&strs(&args(
        &shared,
        dir,
        "accum",
        &["--batch-size", "2", "--grad-accum", "2", "--threads", "1"],
    ))));
    let zero = args(&shared, dir, "zero", &["--batch-size", "2", "--zero", "1"]);
    succeeds(mpirun(mpi, 2, &strs(&zero), &[]));
    for other in ["rows", "accum", "zero"] {
        same_weights(&dir.join("ranks"), &dir.join(other));
    }
    // Rank 0 alone writes the log: one line per step, the time between ranks in it.
    let log = std::fs::read_to_string(dir.join("ranks/log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 10);
    assert!(log.lines().all(|l| l.contains("\"comm_ms\"")), "{log}");
    // The same losses as one process (the data order does not depend on the rank count).
    let losses = |name: &str| -> Vec<f64> {
        let text = std::fs::read_to_string(dir.join(name).join("log.jsonl")).unwrap();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        lines.map(|v| v["train_loss"].as_f64().unwrap()).collect()
    };
    for (a, b) in losses("ranks").iter().zip(losses("rows")) {
        assert!((a - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
    }
}

#[test]
fn runs_resume_across_rank_counts_with_and_without_zero_1() {
    let Some(mpi) = mpi_gpt() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shared = setup(dir);
    succeeds(gpt(&strs(&args(
        &shared,
        dir,
        "straight",
        &["--batch-size", "4", "--threads", "2"],
    ))));
    // Two ranks with ZeRO-1 (the checkpoint gathers the optimizer state), then one process.
    let first = args(
        &shared,
        dir,
        "two_then_one",
        &["--batch-size", "2", "--zero", "1", "--stop-at", "5"],
    );
    succeeds(mpirun(mpi, 2, &strs(&first), &[]));
    let two_then_one = dir.join("two_then_one");
    let resume = |run: &Path, extra: &[&str]| {
        let mut a = vec![
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--quiet",
            "--num-samples",
            "0",
        ];
        a.extend(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    succeeds(gpt(&strs(&resume(
        &two_then_one,
        &["--batch-size", "4", "--threads", "2"],
    ))));
    same_weights(&dir.join("straight"), &two_then_one);
    // One process, then two ranks with ZeRO-1 (each takes its shard of the saved state).
    succeeds(gpt(&strs(&args(
        &shared,
        dir,
        "one_then_two",
        &["--batch-size", "4", "--stop-at", "5", "--threads", "2"],
    ))));
    let one_then_two = dir.join("one_then_two");
    let again = resume(&one_then_two, &["--batch-size", "2", "--zero", "1"]);
    succeeds(mpirun(mpi, 2, &strs(&again), &[]));
    same_weights(&dir.join("straight"), &one_then_two);
    // Another global batch would be other data: refused, with the flags that fit.
    let run = one_then_two.to_str().unwrap();
    let out = mpirun(
        mpi,
        2,
        &["train", "--resume", run, "--steps", "12", "--batch-size", "4"],
        &[],
    );
    fails_with(&out, "give --batch-size 2 --grad-accum 1");
}

#[test]
fn a_rank_that_dies_stops_the_run_and_its_last_checkpoint_resumes() {
    let Some(mpi) = mpi_gpt() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shared = setup(dir);
    succeeds(gpt(&strs(&args(
        &shared,
        dir,
        "straight",
        &["--batch-size", "4", "--threads", "2"],
    ))));
    let run = args(&shared, dir, "killed", &["--batch-size", "2", "--save-every", "2"]);
    let out = mpirun(mpi, 2, &strs(&run), &[("GPT_TEST_KILL_RANK", "1:5")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.status.code() != Some(124), "{err}");
    assert!(err.contains("rank 1: ending at step 5"), "{err}");
    // Steps 1-4 were done: the checkpoint of step 2 or 4 (rank 0 may have been saving it) resumes.
    let killed = dir.join("killed");
    let resume = [
        "train",
        "--resume",
        killed.to_str().unwrap(),
        "--batch-size",
        "4",
        "--quiet",
    ];
    succeeds(gpt(&[&resume[..], &["--num-samples", "0"]].concat()));
    same_weights(&dir.join("straight"), &killed);
}

#[test]
fn ranks_with_other_flags_or_a_nan_stop_with_one_message() {
    let Some(mpi) = mpi_gpt() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shared = setup(dir);
    // One rank per program (MPMD): the second with another learning rate.
    let a = args(&shared, dir, "mismatch", &["--lr", "0.01"]);
    let b = args(&shared, dir, "mismatch", &["--lr", "0.02"]);
    let mut mpmd = strs(&a);
    mpmd.extend([":", "-np", "1", mpi.to_str().unwrap()]);
    mpmd.extend(strs(&b));
    let out = mpirun(mpi, 1, &mpmd, &[]);
    fails_with(&out, "rank 1 has other settings than rank 0");
    assert!(!dir.join("mismatch/log.jsonl").exists(), "refused before training");

    let nan = args(&shared, dir, "nan", &["--batch-size", "2", "--save-every", "2"]);
    let out = mpirun(mpi, 2, &strs(&nan), &[("GPT_TEST_NAN_RANK", "1:3")]);
    fails_with(&out, "the loss became NaN on rank 1 at step 3");
    fails_with(&out, "the last checkpoint (step 2) is kept");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("diverged").count(), 1, "rank 0 alone says it: {err}");
    assert!(dir.join("nan/train_state-2.safetensors").is_file());
}

#[test]
fn a_build_without_mpi_under_a_launcher_refuses_to_train_copies() {
    // As `mpirun -np 2` would start it: the launcher's environment is all it takes.
    let out = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["train", "--steps", "1", "--out", "/nonexistent/never"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    if cfg!(feature = "mpi") {
        return;
    }
    fails_with(&out, "--features mpi");
    fails_with(&out, "libopenmpi-dev openmpi-bin");
}
