//! What the tests share: running `gpt` and judging its outcome; the golden
//! comparisons with `transformers` ([`golden`]).
// Each test crate uses its own subset.
#![allow(dead_code)]

pub mod golden;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the `gpt` binary with `args`.
pub fn gpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .output()
        .expect("gpt runs")
}

/// Runs the `gpt` binary with `args`, killing it after `limit`: `Err` says it hung.
pub fn gpt_within(args: &[&str], limit: Duration) -> Result<Output, String> {
    // Files, not pipes: a child blocked on a full pipe would look hung.
    let (mut stdout, mut stderr) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .expect("gpt starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("gpt can be waited on") {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().expect("gpt can be killed");
            child.wait().expect("gpt ends once killed");
            return Err(format!("still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |f: &mut std::fs::File| {
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Ok(Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    })
}

/// Asserts the command succeeded (showing its stderr if not) and hands it back.
pub fn succeeds(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Asserts the command failed with a message containing `want`, and did not panic.
pub fn fails_with(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    assert!(err.contains(want), "error should mention {want:?}: {err}");
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small base model trained on the built-in names for `steps` steps:
/// `n_layer` blocks, 16 wide.
pub fn names_base(dir: &Path, n_layer: usize, steps: usize) {
    let (n_layer, steps) = (n_layer.to_string(), steps.to_string());
    succeeds(gpt(&[
        "train",
        "--out",
        s(dir),
        "--n-layer",
        &n_layer,
        "--n-embd",
        "16",
        "--steps",
        &steps,
        "--num-samples",
        "0",
        "-q",
    ]));
}

/// A 2-D little-endian f32 .npy array.
pub struct Npy {
    pub shape: (usize, usize),
    pub data: Vec<f32>,
}

pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let dims = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let dims: Vec<usize> = dims.split(',').map(|d| d.trim().parse().unwrap()).collect();
    let data: Vec<f32> = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    Npy {
        shape: (dims[0], dims[1]),
        data,
    }
}
