//! Bad input never panics and nothing is lost: every case runs the `nmflow` binary and checks the
//! exit code (1 failure, 2 usage), that the message names what is wrong, that no panic or
//! backtrace appears, and that every file that existed before is byte-identical after (and no
//! file appeared). The table of cases is `docs/errors.md`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// A tiny zoo and models, shared by every case (made once per test binary).
struct Fixture {
    dir: PathBuf,
    data: PathBuf,
}

fn run(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .env("NMFLOW_DATA", data)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let data = common::data_dir();
        let dir = common::temp_dir("bad-input");
        let p = |s: &str| dir.join(s).to_str().unwrap().to_string();
        let ok = |args: &[&str]| {
            let o = run(args, &data);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        ok(&[
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-16-10",
            "--runs",
            "4",
            "--epochs",
            "1",
            "--shard-runs",
            "2",
            "--out",
            &p("z0"),
            "--quiet",
        ]);
        ok(&[
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-8-10",
            "--runs",
            "2",
            "--epochs",
            "1",
            "--out",
            &p("z1"),
            "--quiet",
        ]);
        // A multi-task zoo (8 runs over 4 label permutations, one unseen) and a conditioned model.
        ok(&[
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-16-10",
            "--runs",
            "8",
            "--epochs",
            "1",
            "--shard-runs",
            "4",
            "--tasks",
            "perm:4:unseen=1",
            "--out",
            &p("zt"),
            "--quiet",
        ]);
        ok(&[
            "train",
            "--zoo",
            &p("zt"),
            "--out",
            &p("mc"),
            "--condition",
            "support",
            "--shots",
            "1",
            "--steps",
            "4",
            "--hidden",
            "8",
            "--depth",
            "1",
            "--functional-samples",
            "2",
            "--functional-batch",
            "16",
            "--quiet",
        ]);
        // The class-equivariant field on the same zoo, exported for the device.
        ok(&[
            "train",
            "--zoo",
            &p("zt"),
            "--out",
            &p("mk"),
            "--condition",
            "classes",
            "--shots",
            "1",
            "--steps",
            "4",
            "--hidden",
            "8",
            "--depth",
            "1",
            "--functional-samples",
            "2",
            "--functional-batch",
            "16",
            "--quiet",
        ]);
        ok(&["export", "--model", &p("mk"), "--out", &p("mk.nmf")]);
        // Support sets for `sample --support`: 200 test images of mnist8 with their own labels
        // (every class present), and three broken ones.
        ok(&[
            "dump-inputs",
            "--dataset",
            "mnist8",
            "--n",
            "200",
            "--out",
            &p("s-ok"),
        ]);
        let write = |name: &str, images: Vec<u8>, labels: Vec<u8>| {
            fs::write(dir.join(format!("{name}.images")), images).unwrap();
            fs::write(dir.join(format!("{name}.labels")), labels).unwrap();
        };
        write("s-shape", vec![3; 100], vec![0]);
        write("s-empty", Vec::new(), Vec::new());
        write("s-label", vec![3; 640], vec![0, 1, 2, 3, 4, 12, 6, 7, 8, 9]);
        ok(&[
            "train",
            "--zoo",
            &p("z0"),
            "--out",
            &p("m0"),
            "--steps",
            "20",
            "--field",
            "mlp",
            "--hidden",
            "32",
            "--quiet",
        ]);
        ok(&[
            "train",
            "--zoo",
            &p("z0"),
            "--out",
            &p("mj"),
            "--steps",
            "10",
            "--method",
            "jko",
            "--hidden",
            "8",
            "--quiet",
        ]);
        ok(&["export", "--model", &p("m0"), "--out", &p("m0.nmf")]);
        // One iteration of fine-tuning with the per-coordinate term.
        ok(&[
            "finetune",
            "--model",
            &p("m0"),
            "--out",
            &p("m0d"),
            "--dataset",
            "mnist8",
            "--iterations",
            "1",
            "--eval-every",
            "1",
            "--eval-samples",
            "2",
            "--trajectories",
            "2",
            "--steps",
            "2",
            "--reward-images",
            "16",
            "--diagonal",
            "--quiet",
        ]);
        // The fine-tuned field with the per-coordinate term exports (format version 7) with its
        // memoryless SDE sampler (version 8); a copy whose term ends in a NaN bias (the four
        // bytes before the SDE's t0, the payload's last four), with a valid checksum.
        ok(&["export", "--model", &p("m0d"), "--out", &p("m0d.nmf")]);
        let o = run(&["inspect", &p("m0d.nmf")], &data);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success()
                && text.contains("format v8")
                && text.contains("sde")
                && text.contains("per-coordinate term"),
            "{text}"
        );
        let m0d = fs::read(dir.join("m0d.nmf")).unwrap();
        let mut payload = m0d[nmflow_format::HEADER_LEN..].to_vec();
        let at = payload.len() - 8;
        payload[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        let mut nan = nmflow_format::Header::for_payload(&payload)
            .to_bytes()
            .to_vec();
        nan.extend(payload);
        fs::write(dir.join("m0d-nan.nmf"), nan).unwrap();
        // A tiny VAE on each zoo and a latent model on the first.
        for (zoo, vae) in [("z0", "v0"), ("z1", "v1")] {
            ok(&[
                "vae",
                "--zoo",
                &p(zoo),
                "--out",
                &p(vae),
                "--latent",
                "4",
                "--hidden",
                "16",
                "--steps",
                "4",
                "--eval-every",
                "2",
                "--quiet",
            ]);
        }
        ok(&[
            "train",
            "--zoo",
            &p("z0"),
            "--out",
            &p("ml"),
            "--latent",
            &p("v0"),
            "--steps",
            "4",
            "--hidden",
            "16",
            "--quiet",
        ]);
        // The same from the Gaussian latent source, which exports.
        ok(&[
            "train",
            "--zoo",
            &p("z0"),
            "--out",
            &p("mlg"),
            "--latent",
            &p("v0"),
            "--source",
            "gaussian",
            "--coupling",
            "independent",
            "--steps",
            "4",
            "--hidden",
            "16",
            "--quiet",
        ]);
        ok(&["export", "--model", &p("mlg"), "--out", &p("mlg.nmf")]);
        ok(&[
            "sample",
            "--model",
            &p("m0"),
            "--n",
            "2",
            "--out",
            &p("g.safetensors"),
        ]);
        fs::write(dir.join("garbage.nmf"), b"not a model file at all").unwrap();
        fs::write(dir.join("plain-file"), b"x").unwrap();
        fs::create_dir_all(dir.join("not-a-model/sub")).unwrap();
        fs::write(dir.join("not-a-model/notes.txt"), b"mine").unwrap();
        fs::write(
            dir.join("cfg-zero-runs.toml"),
            "runs = 0\ndataset = \"mnist8\"\narch = \"mlp:64-8-10\"\n",
        )
        .unwrap();
        fs::write(dir.join("cfg-unknown.toml"), "runz = 3\n").unwrap();
        fs::write(dir.join("cfg-arch.toml"), "arch = \"resnet\"\n").unwrap();
        // A folder another live process writes into (PID 1 always runs).
        fs::create_dir_all(dir.join("busy-zoo")).unwrap();
        fs::write(dir.join("busy-zoo/.nmflow.lock"), "1").unwrap();
        Fixture { dir, data }
    })
}

/// Every file and folder under `dir` with its bytes (folders: empty).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Runs one case against the shared fixture: `{dir}` in an argument stands for the fixture folder.
fn case(args: &[&str], code: i32, needles: &[&str]) {
    let f = fixture();
    let dir = f.dir.to_str().unwrap();
    let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", dir)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    check_in(&f.dir, &args, code, needles, &f.data);
}

fn check_in(dir: &Path, args: &[&str], code: i32, needles: &[&str], data: &Path) {
    // One case at a time: the snapshots of the shared folder must not see another case's run.
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = snapshot(dir);
    let out = run(args, data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "nmflow {}: stderr: {stderr}",
        args.join(" ")
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "nmflow {}: expected {needle:?} in: {stderr}",
            args.join(" ")
        );
    }
    for bad in [
        "panicked",
        "stack backtrace",
        "RUST_BACKTRACE",
        "Os {",
        "Custom {",
    ] {
        assert!(
            !stderr.contains(bad),
            "nmflow {}: {bad:?} in: {stderr}",
            args.join(" ")
        );
    }
    // One line, the cause once; clap's usage errors add its hint to try --help.
    let clap = stderr.contains("For more information, try '--help'");
    assert!(
        stderr.starts_with("error: ") && (clap || stderr.trim_end().lines().count() == 1),
        "nmflow {}: not a one-line error: {stderr}",
        args.join(" ")
    );
    // `NMFLOW_ERRORS_TABLE=FILE` collects every case for docs/errors.md.
    if let Some(table) = std::env::var_os("NMFLOW_ERRORS_TABLE") {
        use std::io::Write as _;
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.replace(dir.to_str().unwrap_or("\u{0}"), "DIR"))
            .collect();
        let line = stderr
            .lines()
            .next()
            .unwrap_or("")
            .replace(dir.to_str().unwrap_or("\u{0}"), "DIR");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(table)
            .unwrap();
        writeln!(f, "{}\t{}\t{}", code, shown.join(" "), line).unwrap();
    }
    let after = snapshot(dir);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        // A stale lock left by a killed job may be taken over and removed; a new one may not stay.
        .filter(|p| !p.ends_with(".nmflow.lock") || after.contains_key(*p))
        .collect();
    assert!(
        changed.is_empty(),
        "nmflow {}: changed or new files {changed:?}",
        args.join(" ")
    );
}

#[test]
fn zoo_settings_out_of_range() {
    let z = "{dir}/new-zoo";
    let base = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-8-10",
            "--out",
        ];
        v.push(Box::leak(z.to_string().into_boxed_str()));
        v.extend(extra);
        v
    };
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            base(&["--runs", "2", "--heldout", "0.9"]),
            2,
            &["--heldout 0.9 holds out all 2 runs"],
        ),
        (
            base(&["--heldout", "1.5"]),
            2,
            &["--heldout must be in [0, 1)"],
        ),
        (
            base(&["--tasks", "rot:4"]),
            2,
            &["--tasks \"rot:4\": expected FAMILY:N or FAMILY:N:unseen=M, FAMILY perm or pairs"],
        ),
        (
            base(&["--tasks", "perm:1"]),
            2,
            &["--tasks perm:1:unseen=0: a multi-task zoo needs at least 2 tasks"],
        ),
        (
            base(&["--tasks", "perm:4:unseen=4"]),
            2,
            &["4 unseen tasks leave none to train on"],
        ),
        (
            base(&["--runs", "3", "--tasks", "perm:4"]),
            2,
            &["3 runs cannot cover 4 tasks"],
        ),
        (
            base(&["--heldout=-0.1"]),
            2,
            &["--heldout must be in [0, 1)"],
        ),
        (
            base(&["--momentum", "1"]),
            2,
            &["--momentum must be in [0, 1)"],
        ),
        (base(&["--lr", "0"]), 2, &["--lr must be a positive number"]),
        (base(&["--lr=-1"]), 2, &["--lr must be a positive number"]),
        (
            base(&["--lr", "nan"]),
            2,
            &["--lr must be a positive number"],
        ),
        (
            base(&["--epochs", "0"]),
            2,
            &["--epochs must be at least 1"],
        ),
        (
            base(&["--batch-size", "0"]),
            2,
            &["--batch-size must be at least 1"],
        ),
        (
            base(&["--shard-runs", "0"]),
            2,
            &["--shard-runs must be at least 1"],
        ),
        (base(&["--runs=-3"]), 2, &["--runs"]),
        (base(&["--optimizer", "rmsprop"]), 2, &["--optimizer"]),
        (
            vec![
                "zoo",
                "--arch",
                "mlp:64-99999999999-10",
                "--dataset",
                "mnist8",
                "--out",
                z,
            ],
            2,
            &["parameters, more than the 16777216"],
        ),
        (
            vec![
                "zoo",
                "--arch",
                "mlp:64-0-10",
                "--dataset",
                "mnist8",
                "--out",
                z,
            ],
            2,
            &["widths must be positive integers"],
        ),
        (
            vec!["zoo", "--arch", "cnn-s", "--dataset", "mnist8", "--out", z],
            2,
            &["dataset mnist8"],
        ),
        (
            vec![
                "zoo",
                "--arch",
                "cnn-s",
                "--dataset",
                "mnist",
                "--engine",
                "fused",
                "--out",
                z,
            ],
            2,
            &[
                "--engine fused trains MLP architectures only (got cnn-s); use --engine burn or auto",
            ],
        ),
        (
            base(&["--engine", "fused", "--device", "cuda"]),
            2,
            &["--engine fused trains on the CPU only (got --device cuda)"],
        ),
        (
            vec![
                "zoo",
                "--dataset",
                "digits",
                "--arch",
                "mlp:64-10",
                "--out",
                z,
            ],
            2,
            &["evaluation/shift set"],
        ),
        (
            vec!["zoo", "--dataset", "cifar10", "--out", z],
            2,
            &["unknown dataset \"cifar10\""],
        ),
        (
            base(&["--checkpoints", "0,99999999"]),
            2,
            &["checkpoint step 99999999 is past the end of training"],
        ),
        (base(&["--checkpoints", "often"]), 2, &["--checkpoints"]),
        (
            vec![
                "zoo",
                "--out",
                "{dir}/plain-file",
                "--dataset",
                "mnist8",
                "--arch",
                "mlp:64-8-10",
            ],
            1,
            &["is not a directory"],
        ),
    ];
    for (args, code, needles) in &cases {
        case(args, *code, needles);
    }
}

#[test]
fn zoo_config_files_name_the_file_and_key() {
    let z = "{dir}/new-zoo";
    case(
        &["zoo", "--out", z, "--config", "{dir}/cfg-zero-runs.toml"],
        2,
        &["`runs` in", "cfg-zero-runs.toml must be at least 1"],
    );
    // A flag overrides the file, and then the flag is named.
    case(
        &[
            "zoo",
            "--out",
            z,
            "--config",
            "{dir}/cfg-zero-runs.toml",
            "--runs",
            "0",
        ],
        2,
        &["--runs must be at least 1"],
    );
    case(
        &["zoo", "--out", z, "--config", "{dir}/cfg-unknown.toml"],
        2,
        &["cfg-unknown.toml", "unknown field `runz`"],
    );
    case(
        &["zoo", "--out", z, "--config", "{dir}/cfg-arch.toml"],
        2,
        &["`arch` in", "cfg-arch.toml", "unknown architecture"],
    );
    case(
        &["zoo", "--out", z, "--config", "{dir}/no-such.toml"],
        1,
        &["--config", "no-such.toml: not found"],
    );
}

#[test]
fn zoo_jobs_do_not_clobber_each_other_or_adopt_altered_shards() {
    let f = fixture();
    // Another live process holds the folder.
    case(
        &[
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-8-10",
            "--runs",
            "2",
            "--epochs",
            "1",
            "--out",
            "{dir}/busy-zoo",
        ],
        1,
        &["in use by process 1"],
    );
    // A different zoo in the folder: refused, and the hint does not delete another job's work.
    case(
        &[
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-16-10",
            "--runs",
            "4",
            "--epochs",
            "2",
            "--shard-runs",
            "2",
            "--out",
            "{dir}/z0",
        ],
        1,
        &["already holds a zoo with different settings (epochs: existing 1, requested 2)"],
    );
    // An interrupted job whose finished shard was altered before the rerun.
    let tmp = common::temp_dir("bad-input-shard");
    let p = tmp.join("z").to_str().unwrap().to_string();
    let args = [
        "zoo",
        "--dataset",
        "mnist8",
        "--arch",
        "mlp:64-8-10",
        "--runs",
        "4",
        "--epochs",
        "1",
        "--shard-runs",
        "2",
        "--jobs",
        "1",
        "--out",
        &p,
        "--quiet",
    ];
    let mut first: Vec<&str> = args.to_vec();
    first.extend(["--max-new-shards", "1"]);
    let o = run(&first, &f.data);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shard = tmp.join("z/shard-00000.safetensors");
    let mut bytes = fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&shard, bytes).unwrap();
    check_in(
        &tmp,
        &args,
        1,
        &["shard-00000.safetensors", "was altered"],
        &f.data,
    );
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn train_settings_out_of_range() {
    let t = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["train", "--zoo", "{dir}/z0", "--out", "{dir}/new-model"];
        v.extend(extra);
        v
    };
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            t(&[
                "--field",
                "set",
                "--functional-rollout",
                "4",
                "--functional-rollout-max",
                "2",
            ]),
            2,
            &["--functional-rollout-max 2 needs --functional-rollout between 1 and it (got 4)"],
        ),
        (
            t(&["--solver", "sde"]),
            2,
            &["--solver sde is the sampler of adjoint fine-tuning"],
        ),
        (
            t(&["--recipe", "reward", "--field", "set"]),
            2,
            &[
                "--recipe reward trains NM-CFM with the MLP field",
                "does not take --field set",
            ],
        ),
        (
            t(&["--recipe", "functional", "--field", "mlp"]),
            2,
            &["--recipe functional is the set field's recipe"],
        ),
        (
            t(&["--field", "set", "--finetune-iterations", "5"]),
            2,
            &["--finetune-iterations 5: the reward stage fine-tunes an unconditioned MLP field"],
        ),
        (
            t(&["--finetune-rollout-max", "4"]),
            2,
            &["--finetune-rollout-max 4: the range starts at the stored sampler's 8 steps"],
        ),
        (
            t(&["--finetune-iterations", "0", "--finetune-rollout-max", "16"]),
            2,
            &["--finetune-rollout-max 16 goes with a reward stage"],
        ),
        (
            t(&["--lr", "0"]),
            2,
            &["--lr must be a finite number > 0 (got 0)"],
        ),
        (
            t(&["--lr=-1"]),
            2,
            &["--lr must be a finite number > 0 (got -1)"],
        ),
        (
            t(&["--lr", "inf"]),
            2,
            &["--lr must be a finite number > 0"],
        ),
        (
            t(&["--weight-decay=-1"]),
            2,
            &["--weight-decay must be a finite number ≥ 0"],
        ),
        (
            t(&["--sigma=-1"]),
            2,
            &["--sigma must be a finite number ≥ 0"],
        ),
        (
            t(&["--source", "gaussian", "--source-std", "0"]),
            2,
            &["--source-std must be a finite number > 0"],
        ),
        (
            t(&["--source", "uniform"]),
            2,
            &["--source: unknown source \"uniform\""],
        ),
        (t(&["--steps", "0"]), 2, &["--steps must be at least 1"]),
        (
            t(&["--batch-size", "0"]),
            2,
            &["--batch-size must be at least 1"],
        ),
        (t(&["--hidden", "0"]), 2, &["--hidden must be at least 1"]),
        (
            t(&["--eval-every", "0"]),
            2,
            &["--eval-every must be at least 1"],
        ),
        (
            t(&["--solver-steps", "0"]),
            2,
            &["--solver-steps must be at least 1"],
        ),
        (
            t(&["--time-dim", "3"]),
            2,
            &["--time-dim must be an even number ≥ 2 (got 3)"],
        ),
        (
            t(&["--hidden", "99999999999"]),
            2,
            &["parameters (--hidden 99999999999"],
        ),
        (
            t(&["--functional-weight=-1"]),
            2,
            &["--functional-weight must be a finite number ≥ 0"],
        ),
        (
            t(&["--functional-weight", "nan"]),
            2,
            &["--functional-weight must be a finite number ≥ 0"],
        ),
        (
            t(&["--method", "jko", "--functional-weight", "1"]),
            2,
            &["--functional-weight goes with --method cfm"],
        ),
        (
            t(&[
                "--method",
                "mmfm",
                "--functional-weight",
                "1",
                "--functional-rollout",
                "0",
            ]),
            2,
            &["--functional-weight goes with --method cfm"],
        ),
        (
            t(&[
                "--field",
                "set",
                "--functional-rollout",
                "4",
                "--functional-samples",
                "0",
            ]),
            2,
            &["--functional-samples must be at least 1"],
        ),
        (
            t(&["--field", "potential"]),
            2,
            &["--field potential goes with --method jko"],
        ),
        (
            t(&["--method", "jko", "--tau", "0"]),
            2,
            &["--tau must be a finite number > 0"],
        ),
        (
            t(&["--field", "set", "--engine", "fused", "--ema", "0.9"]),
            2,
            &["--engine fused trains the MLP field (without a functional term) and the set field"],
        ),
        (
            t(&["--field", "set", "--functional-rollout-counts", "4,0"]),
            2,
            &["--functional-rollout-counts [4, 0] needs --functional-rollout ≥ 1, counts ≥ 1"],
        ),
        (
            t(&["--field", "mlp", "--step-input"]),
            2,
            &["--step-input goes with the set field"],
        ),
        (
            t(&["--ema", "1"]),
            2,
            &["--ema must be 0 (no average) or a decay in (0, 1), e.g. 0.999 (got 1)"],
        ),
        (t(&["--method", "sgd"]), 2, &["--method"]),
        (
            vec![
                "train",
                "--zoo",
                "{dir}/z1",
                "--out",
                "{dir}/new-model",
                "--field",
                "set",
                "--hidden",
                "0",
            ],
            2,
            &["--hidden must be at least 1"],
        ),
    ];
    for (args, code, needles) in &cases {
        case(args, *code, needles);
    }
}

#[test]
fn train_inputs_and_outputs() {
    case(
        &["train", "--zoo", "{dir}/no-zoo", "--out", "{dir}/new-model"],
        1,
        &["no-zoo/manifest.json", "no manifest"],
    );
    case(
        &[
            "train",
            "--zoo",
            "{dir}/plain-file",
            "--out",
            "{dir}/new-model",
        ],
        1,
        &["plain-file/manifest.json"],
    );
    // Finished work with other settings is not replaced without --force.
    case(
        &[
            "train", "--zoo", "{dir}/z0", "--out", "{dir}/m0", "--steps", "30", "--field", "mlp",
            "--hidden", "32",
        ],
        1,
        &[
            "holds a model trained with other settings (steps: existing 20, requested 30)",
            "--force",
        ],
    );
    case(
        &[
            "train",
            "--zoo",
            "{dir}/z0",
            "--out",
            "{dir}/plain-file",
            "--field",
            "mlp",
        ],
        1,
        &["is not a directory"],
    );
    case(
        &[
            "train",
            "--zoo",
            "{dir}/z0",
            "--out",
            "{dir}/not-a-model",
            "--field",
            "mlp",
        ],
        1,
        &["holds no model", "--force"],
    );
}

#[test]
fn vae_and_latent_models_bad_input() {
    let vae = |extra: &[&str]| {
        let mut a = vec!["vae", "--zoo", "{dir}/z0", "--out", "{dir}/new-vae"];
        a.extend_from_slice(extra);
        a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()
    };
    for (extra, needle) in [
        (
            &["--latent", "0"][..],
            "--latent must be at least 1 (got 0)",
        ),
        (
            &["--latent", "5000"][..],
            "--latent 5000 must be smaller than the classifier's 1210 parameters",
        ),
        (
            &["--latent", "4", "--beta=-1"][..],
            "--beta must be a finite number ≥ 0 (got -1)",
        ),
        (
            &["--latent", "4", "--lr", "0"][..],
            "--lr must be a finite number > 0 (got 0)",
        ),
        (
            &[
                "--latent",
                "4",
                "--functional-target",
                "teacher",
                "--functional-weight",
                "0",
            ][..],
            "--functional-target teacher scores the functional term, which --functional-weight 0 turns off",
        ),
    ] {
        let a = vae(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        case(&a, 2, &[needle]);
    }
    case(
        &[
            "vae",
            "--zoo",
            "{dir}/no-zoo",
            "--out",
            "{dir}/new-vae",
            "--latent",
            "4",
        ],
        1,
        &["no-zoo/manifest.json"],
    );
    // Finished work with other settings is not replaced without --force.
    case(
        &[
            "vae",
            "--zoo",
            "{dir}/z0",
            "--out",
            "{dir}/v0",
            "--latent",
            "5",
            "--hidden",
            "16",
            "--steps",
            "4",
            "--eval-every",
            "2",
        ],
        1,
        &["v0", "latent", "--force"],
    );
    let train = |latent: &str, extra: &[&str]| {
        let mut a = vec![
            "train",
            "--zoo",
            "{dir}/z0",
            "--out",
            "{dir}/new-model",
            "--latent",
        ];
        a.push(latent);
        a.extend_from_slice(extra);
        a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()
    };
    for (latent, extra, code, needle) in [
        ("{dir}/v1", &[][..], 2, "the VAE was trained on another zoo"),
        (
            "{dir}/m0",
            &[][..],
            1,
            "not a VAE directory (written by `nmflow vae`)",
        ),
        (
            "{dir}/v0",
            &["--field", "set"][..],
            2,
            "--latent: the set field works on hidden units",
        ),
        (
            "{dir}/v0",
            &["--functional-weight", "1"][..],
            2,
            "--latent: the functional term of `train` does not decode latents",
        ),
        (
            "{dir}/v0",
            &["--coupling", "independent"][..],
            2,
            "--latent: the encoded Kaiming source pairs each run with its own encoded initialization",
        ),
    ] {
        let a = train(latent, extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        case(&a, code, &[needle]);
    }
    // The device draws its own latent source: a latent model from encoded Kaiming inits (which
    // would need the encoder there) is refused, naming the flag that makes one that exports.
    case(
        &["export", "--model", "{dir}/ml", "--out", "{dir}/ml.nmf"],
        2,
        &[
            "a latent model runs on the device only from an N(0, σ²) source",
            "--source gaussian",
        ],
    );
    // The device's shift detector guides a field on the weights: a latent model file is refused.
    case(
        &[
            "shift-calibrate",
            "{dir}/mlg.nmf",
            "--dataset",
            "mnist8",
            "--out",
            "{dir}/new-shift.nmf",
        ],
        1,
        &["mlg.nmf: is a latent model", "without --latent"],
    );
}

/// Conditioning: the zoo, the flags and the commands that do not take a conditioned model.
#[test]
fn conditioning_settings_are_checked() {
    let train = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "train",
            "--zoo",
            "{dir}/zt",
            "--out",
            "{dir}/new-model",
            "--condition",
            "support",
        ];
        v.extend_from_slice(extra);
        v
    };
    let support = |path: &'static str| -> Vec<&'static str> {
        vec![
            "sample",
            "--model",
            "{dir}/mc",
            "--support",
            path,
            "--out",
            "{dir}/new.safetensors",
        ]
    };
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            vec![
                "train",
                "--zoo",
                "{dir}/z0",
                "--out",
                "{dir}/new-model",
                "--condition",
                "support",
            ],
            2,
            &["--condition: the zoo holds one task", "--tasks perm:N"],
        ),
        (
            vec!["train", "--zoo", "{dir}/zt", "--out", "{dir}/new-model"],
            2,
            &["is a multi-task zoo", "--condition support"],
        ),
        (train(&["--shots", "0"]), 2, &["--shots must be at least 1"]),
        (
            train(&["--cfg-drop", "1"]),
            2,
            &["--cfg-drop must be in [0, 1)"],
        ),
        (
            train(&["--method", "mmfm"]),
            2,
            &["--condition: conditioning goes with --method cfm"],
        ),
        (
            vec![
                "train",
                "--zoo",
                "{dir}/zt",
                "--out",
                "{dir}/new-model",
                "--condition",
                "classes",
                "--field",
                "mlp",
            ],
            2,
            &["--condition: `classes` goes with --field set"],
        ),
        (
            vec![
                "train",
                "--zoo",
                "{dir}/z0",
                "--out",
                "{dir}/new-model",
                "--relabel",
            ],
            2,
            &["--relabel goes with --condition"],
        ),
        (
            train(&["--functional-rollout", "0"]),
            2,
            &["--functional-rollout ≥ 1"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--task",
                "0",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--task needs a conditioned model"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/mc",
                "--task",
                "9",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--task 9: the zoo has tasks 0 to 3"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/mc",
                "--task",
                "1",
                "--shots",
                "0",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--shots must be at least 1"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/mc",
                "--task",
                "1",
                "--guidance=-1",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--guidance must be finite and ≥ 0"],
        ),
        (
            support("{dir}/s-shape"),
            2,
            &[
                "s-shape.images: 100 bytes is not a whole number of images of 64 pixels",
                "mnist8",
            ],
        ),
        (
            support("{dir}/s-empty"),
            2,
            &["s-empty.images: holds no example (zero shots)"],
        ),
        (
            support("{dir}/s-label"),
            2,
            &["s-label.labels: example 5 has label 12; the model's tasks have labels 0 to 9"],
        ),
        (
            vec![
                "dump-inputs",
                "--dataset",
                "mnist8",
                "--zoo",
                "{dir}/zt",
                "--task",
                "9",
                "--out",
                "{dir}/new-support",
            ],
            2,
            &["--task 9: the zoo has tasks 0 to 3"],
        ),
        (
            vec![
                "dump-inputs",
                "--dataset",
                "mnist8",
                "--zoo",
                "{dir}/z0",
                "--task",
                "0",
                "--out",
                "{dir}/new-support",
            ],
            2,
            &["a single-task zoo has no --task"],
        ),
        (
            vec![
                "dump-inputs",
                "--dataset",
                "digits",
                "--zoo",
                "{dir}/zt",
                "--task",
                "0",
                "--out",
                "{dir}/new-support",
            ],
            2,
            &["its tasks are labellings of mnist8, not of --dataset digits"],
        ),
        (
            support("{dir}/s-none"),
            1,
            &["s-none.images", "as `nmflow dump-inputs` writes them"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--support",
                "{dir}/s-ok",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--support needs a conditioned model"],
        ),
        (
            vec!["eval", "--model", "{dir}/mc", "--shots", "0"],
            2,
            &["--shots must list counts of at least 1"],
        ),
        (
            vec!["eval", "--model", "{dir}/mc", "--fine-tune-steps", "30"],
            2,
            &["--fine-tune-steps must be a multiple of 25 (got 30)"],
        ),
        (
            vec!["export", "--model", "{dir}/mc", "--out", "{dir}/new.nmf"],
            2,
            &[
                "flattened task embedding is not carried by the model file",
                "--condition classes",
            ],
        ),
        (
            vec!["edge-eval", "{dir}/m0.nmf", "--support", "{dir}/s-ok"],
            2,
            &["--support and --tasks need a conditioned model file"],
        ),
        (
            vec!["edge-eval", "{dir}/mk.nmf", "--n", "2"],
            2,
            &[
                "mk.nmf: a conditioned model makes classifiers for a task",
                "--support PREFIX",
            ],
        ),
        (
            vec!["edge-eval", "{dir}/mk.nmf", "--support", "{dir}/s-shape"],
            2,
            &["s-shape.images: 100 bytes is not a whole number of images of 64 pixels"],
        ),
        (
            vec![
                "edge-eval",
                "{dir}/mk.nmf",
                "--support",
                "{dir}/s-ok",
                "--guidance=-1",
            ],
            2,
            &["--guidance must be finite and ≥ 0 (got -1)"],
        ),
        (
            vec![
                "edge-eval",
                "{dir}/mk.nmf",
                "--tasks",
                "unseen",
                "--zoo",
                "{dir}/zt",
                "--shots",
                "0",
            ],
            2,
            &["--shots and --max-tasks must be at least 1"],
        ),
        (
            vec![
                "edge-eval",
                "{dir}/mk.nmf",
                "--tasks",
                "unseen",
                "--zoo",
                "{dir}/z0",
            ],
            2,
            &["a single-task zoo has no tasks"],
        ),
        (
            vec![
                "edge-eval",
                "{dir}/mk.nmf",
                "--support",
                "{dir}/s-ok",
                "--task",
                "1",
            ],
            2,
            &["--zoo"],
        ),
    ];
    for (args, code, needles) in cases {
        case(&args, code, needles);
    }
    // A support set of one's own: 200 labeled mnist8 images, 4 classifiers for their task.
    let f = fixture();
    let tmp = common::temp_dir("support-sample");
    let p = |s: &str| tmp.join(s).to_str().unwrap().to_string();
    let (mc, zt) = (
        f.dir.join("mc").to_str().unwrap().to_string(),
        f.dir.join("zt").to_str().unwrap().to_string(),
    );
    let ok = |args: &[&str]| -> serde_json::Value {
        let o = run(args, &f.data);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let own = p("own.safetensors");
    let s_ok = f.dir.join("s-ok").to_str().unwrap().to_string();
    let r = ok(&[
        "sample",
        "--model",
        &mc,
        "--support",
        &s_ok,
        "--n",
        "4",
        "--json",
        "--out",
        &own,
    ]);
    assert_eq!(r["n"], 4);
    // Task 1's support set written by dump-inputs makes the classifiers `--task 1` makes.
    let r = ok(&[
        "dump-inputs",
        "--dataset",
        "mnist8",
        "--shots",
        "2",
        "--zoo",
        &zt,
        "--task",
        "1",
        "--seed",
        "5",
        "--json",
        "--out",
        &p("task1"),
    ]);
    assert_eq!(r["n"], 20);
    let (a, b) = (p("a.safetensors"), p("b.safetensors"));
    let from_files = [
        "sample",
        "--model",
        &mc,
        "--support",
        &p("task1"),
        "--n",
        "3",
        "--seed",
        "5",
        "--json",
        "--out",
        &a,
    ];
    ok(&from_files);
    let drawn = [
        "sample", "--model", &mc, "--task", "1", "--shots", "2", "--n", "3", "--seed", "5",
        "--json", "--out", &b,
    ];
    ok(&drawn);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    // The exported class-conditioned field on the device runtime: task 1's support set from the
    // files, measured on the test split under task 1's labels, and the zoo's unseen task.
    let mk = f.dir.join("mk.nmf").to_str().unwrap().to_string();
    let r = ok(&[
        "edge-eval",
        &mk,
        "--support",
        &p("task1"),
        "--zoo",
        &zt,
        "--task",
        "1",
        "--n",
        "2",
        "--json",
    ]);
    assert_eq!(
        (r["n"].as_u64(), r["tasks"]["support_examples"].as_u64()),
        (Some(2), Some(20))
    );
    assert_eq!(r["tasks"]["task_ids"], serde_json::json!([1]));
    let r = ok(&[
        "edge-eval",
        &mk,
        "--tasks",
        "unseen",
        "--zoo",
        &zt,
        "--shots",
        "1",
        "--n",
        "2",
        "--guidance",
        "2",
        "--json",
    ]);
    assert_eq!(r["tasks"]["task_ids"].as_array().map(Vec::len), Some(1));
    // Two field evaluations per step with guidance 2.
    assert_eq!(r["nfe"].as_u64(), Some(2 * 4));
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn zoo_split_out_of_range_is_refused() {
    let f = fixture();
    let tmp = common::temp_dir("bad-input-split");
    let zoo = tmp.join("z");
    fs::create_dir_all(&zoo).unwrap();
    for e in fs::read_dir(f.dir.join("z0")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), zoo.join(e.file_name())).unwrap();
    }
    let path = zoo.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    m["split"]["heldout"] = serde_json::json!([7]);
    fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let z = zoo.to_str().unwrap();
    let out = tmp.join("m");
    check_in(
        &tmp,
        &[
            "train",
            "--zoo",
            z,
            "--out",
            out.to_str().unwrap(),
            "--field",
            "mlp",
        ],
        1,
        &[
            "manifest.json",
            "split names run 7, but the zoo has runs 0..4",
        ],
        &f.data,
    );
    check_in(&tmp, &["inspect", z], 1, &["split names run 7"], &f.data);
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn models_that_are_unfinished_altered_or_mismatched() {
    let f = fixture();
    let tmp = common::temp_dir("bad-input-models");
    let copy = |name: &str| -> PathBuf {
        let to = tmp.join(name);
        fs::create_dir_all(&to).unwrap();
        for e in fs::read_dir(f.dir.join("m0")).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    };
    let unfinished = copy("unfinished");
    fs::remove_file(unfinished.join("train.json")).unwrap();
    let altered = copy("altered");
    let w = altered.join("field.bin");
    let mut bytes = fs::read(&w).unwrap();
    bytes[100] ^= 0x40;
    fs::write(&w, bytes).unwrap();
    let other_layout = copy("other-layout");
    fs::copy(f.dir.join("z1/manifest.json"), tmp.join("z1-manifest.json")).unwrap();
    let z1: serde_json::Value =
        serde_json::from_slice(&fs::read(tmp.join("z1-manifest.json")).unwrap()).unwrap();
    fs::write(
        other_layout.join("layout.json"),
        serde_json::to_vec_pretty(&z1["layout"]).unwrap(),
    )
    .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = s(&tmp.join("g.safetensors"));
    for (model, needle) in [
        (s(&unfinished), "training did not finish (no train.json)"),
        (
            s(&altered),
            "sha256 differs from the one train.json recorded",
        ),
        (
            s(&other_layout),
            "describes 610-parameter classifiers in 4 blocks, but the field's state has 1210 values",
        ),
        (s(&tmp.join("none")), "not a model directory"),
    ] {
        check_in(
            &tmp,
            &["sample", "--model", &model, "--out", &out],
            1,
            &[needle],
            &f.data,
        );
        check_in(
            &tmp,
            &["export", "--model", &model, "--out", &out],
            1,
            &[needle],
            &f.data,
        );
    }
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn sample_eval_export_edge_eval_bad_input() {
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--n",
                "0",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--n and --steps must be at least 1"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--steps",
                "0",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--n and --steps must be at least 1"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/g.safetensors",
            ],
            1,
            &["g.safetensors already exists", "--force"],
        ),
        (
            vec!["sample", "--model", "{dir}/m0", "--out", "{dir}/z0"],
            1,
            &["is a directory"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--solver",
                "midpoint",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--solver"],
        ),
        (
            vec!["eval", "--model", "{dir}/m0", "--n", "0"],
            2,
            &["--n must be at least 1 (got 0)"],
        ),
        (
            vec!["eval", "--model", "{dir}/m0", "--steps", "0"],
            2,
            &["--steps must list step counts of at least 1"],
        ),
        (
            vec!["eval", "--model", "{dir}/m0", "--downstream-epochs", "0"],
            2,
            &["--downstream-epochs must be at least 1"],
        ),
        (
            vec![
                "eval",
                "--model",
                "{dir}/m0",
                "--zoo",
                "{dir}/z1",
                "--downstream",
                "0",
            ],
            1,
            &["was trained on a zoo with manifest sha256"],
        ),
        (vec!["eval", "--model", "{dir}/no-model"], 1, &["no-model"]),
        (
            vec!["export", "--model", "{dir}/m0", "--out", "{dir}/m0.nmf"],
            1,
            &["m0.nmf already exists", "--force"],
        ),
        (
            vec![
                "export",
                "--model",
                "{dir}/m0",
                "--solver",
                "dopri5",
                "--out",
                "{dir}/new.nmf",
            ],
            2,
            &["integrates with fixed steps"],
        ),
        (
            vec![
                "export",
                "--model",
                "{dir}/m0",
                "--steps",
                "70000",
                "--out",
                "{dir}/new.nmf",
            ],
            2,
            &["70000 steps do not fit"],
        ),
        (
            vec![
                "export",
                "--model",
                "{dir}/m0d",
                "--steps",
                "1",
                "--out",
                "{dir}/new.nmf",
            ],
            2,
            &["the memoryless SDE takes at least 2 steps"],
        ),
        (
            vec![
                "sample",
                "--model",
                "{dir}/m0",
                "--solver",
                "sde",
                "--steps",
                "1",
                "--out",
                "{dir}/new.safetensors",
            ],
            2,
            &["--solver sde takes at least 2 steps"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0d",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--method",
                "direct",
            ],
            2,
            &["samples with the memoryless SDE"],
        ),
        (
            vec!["edge-eval", "{dir}/m0d-nan.nmf", "--n", "2"],
            1,
            &["m0d-nan.nmf", "per-coordinate field term 0: invalid value"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/mj",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--diagonal",
            ],
            2,
            &["the per-coordinate term is for MLP fields"],
        ),
        (
            vec!["export", "--model", "{dir}/mj", "--out", "{dir}/new.nmf"],
            2,
            &["a potential (NM-JKO) field has no explicit velocity network"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist",
            ],
            2,
            &["mnist (--dataset)", "64 inputs"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--lambda",
                "0",
            ],
            2,
            &["--lambda must be a positive number (got 0)"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--iterations",
                "0",
            ],
            2,
            &["--iterations must be at least 1 (got 0)"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--max-grad-norm",
                "0",
            ],
            2,
            &["--max-grad-norm must be a positive number (got 0)"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--control-cost",
                "0.1",
            ],
            2,
            &["--control-cost 0.1 applies to --method direct only"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--rollout-max",
                "16",
            ],
            2,
            &["--rollout-max 16: adjoint matching's range starts at --steps 20"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--method",
                "direct",
                "--rollout-max",
                "1",
            ],
            2,
            &["--rollout-max 1: the range starts at the base's own sampler"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--method",
                "direct",
                "--entropy-weight",
                "-1",
            ],
            2,
            &["--entropy-weight must be a number ≥ 0 (got -1)"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "digits",
            ],
            2,
            &["the reward needs a training split"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/m0",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
                "--t0",
                "1.5",
            ],
            2,
            &["--t0 must be in (0, 1) (got 1.5)"],
        ),
        (
            vec![
                "finetune",
                "--model",
                "{dir}/nothing",
                "--out",
                "{dir}/new-ft",
                "--dataset",
                "mnist8",
            ],
            1,
            &["nothing: not a model directory"],
        ),
        (
            vec![
                "eval",
                "--model",
                "{dir}/m0",
                "--zoo",
                "{dir}/z0",
                "--dataset",
                "fashion",
            ],
            2,
            &["--dataset fashion: the zoo", "was trained on mnist8"],
        ),
        (
            vec!["eval", "--model", "{dir}/m0", "--dataset", "fashion"],
            2,
            &["--zoo"],
        ),
        (vec!["edge-eval", "{dir}/no.nmf"], 1, &["no.nmf: not found"]),
        (vec!["edge-eval", "{dir}/garbage.nmf"], 1, &["garbage.nmf"]),
        (
            vec!["edge-eval", "{dir}/m0.nmf", "--n", "0"],
            2,
            &["--n must be at least 1"],
        ),
        (
            vec!["edge-eval", "{dir}/m0.nmf", "--dataset", "mnist"],
            1,
            &["takes 64 inputs but dataset mnist has 784"],
        ),
        (
            vec!["edge-eval", "{dir}/m0.nmf", "--dataset", "svhn"],
            2,
            &["unknown dataset \"svhn\""],
        ),
        (vec!["inspect", "{dir}/garbage.nmf"], 1, &["garbage.nmf"]),
        (
            vec!["inspect", "{dir}/not-a-model"],
            1,
            &["not something nmflow can inspect"],
        ),
        (
            vec!["dump-inputs", "--dataset", "mnist9", "--out", "{dir}/x"],
            2,
            &["mnist9"],
        ),
        (
            vec![
                "dump-inputs",
                "--dataset",
                "digits",
                "--n",
                "0",
                "--out",
                "{dir}/x",
            ],
            2,
            &["--n must be at least 1"],
        ),
        (
            vec!["data", "fetch", "--only", "cifar"],
            2,
            &["unknown set \"cifar\" in --only"],
        ),
        (
            vec!["report", "{dir}/no-such-run"],
            1,
            &["no-such-run: not a folder"],
        ),
        (vec!["frobnicate"], 2, &["unrecognized subcommand"]),
        (vec!["zoo"], 2, &["--out"]),
        (
            vec!["zoo", "--out", "{dir}/new-zoo", "--shard", "3/3"],
            2,
            &["expected I/N with 0 ≤ I < N"],
        ),
        (
            vec!["zoo", "--out", "{dir}/new-zoo", "--shard", "half"],
            2,
            &["--shard"],
        ),
        (
            vec!["zoo", "merge", "{dir}/no-zoo"],
            1,
            &["no-zoo/settings.json: missing: not the folder of a zoo job"],
        ),
        (
            vec!["zoo", "merge", "{dir}/busy-zoo"],
            1,
            &["busy-zoo/settings.json: missing"],
        ),
    ];
    for (args, code, needles) in &cases {
        case(args, *code, needles);
    }
}

#[test]
fn shift_test_bad_input() {
    let base = [
        "shift-test",
        "--zoo",
        "{dir}/z0",
        "--model",
        "{dir}/m0",
        "--out",
        "{dir}/new-shift",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            with(&["--shift", "mnist"]),
            2,
            &["takes 64 inputs, but dataset mnist (--shift) has 784"],
        ),
        (
            with(&["--shift", "digits", "--sizes", "0"]),
            2,
            &["--sizes must list sample sizes of at least 1"],
        ),
        (
            with(&["--shift", "digits", "--sizes", "1800", "--batch", "4096"]),
            2,
            &["--sizes 1800", "the shifted set (digits) 1797"],
        ),
        (
            with(&["--shift", "digits", "--sizes", "600"]),
            2,
            &["--batch (512) must exceed the largest sample size (600)"],
        ),
        (
            with(&["--shift", "digits", "--seeds", "1"]),
            2,
            &["--seeds must be at least 19 to calibrate a threshold at --alpha 0.05"],
        ),
        (
            with(&["--shift", "digits", "--alpha", "1.5"]),
            2,
            &["--alpha must be in (0, 1)"],
        ),
        (
            with(&["--shift", "mnist8:rotate=x"]),
            2,
            &["rotate takes degrees"],
        ),
        (
            with(&["--shift", "mnist8:blur=2"]),
            2,
            &["unknown transform \"blur\""],
        ),
        (
            vec![
                "shift-test",
                "--zoo",
                "{dir}/z0",
                "--shift",
                "digits",
                "--methods",
                "meta",
                "--out",
                "{dir}/new-shift",
            ],
            2,
            &["--methods meta and meta-adjoint need --model"],
        ),
        (
            vec![
                "shift-test",
                "--zoo",
                "{dir}/z1",
                "--model",
                "{dir}/m0",
                "--shift",
                "digits",
                "--out",
                "{dir}/new-shift",
            ],
            1,
            &["was trained on a zoo with manifest sha256"],
        ),
        (
            with(&["--shift", "digits", "--out", "{dir}/not-a-model"]),
            1,
            &["holds no shift test"],
        ),
        (
            with(&["--shift", "digits", "--start-near-base", "1.5"]),
            2,
            &["--start-near-base must be in (0, 1] (got 1.5)"],
        ),
    ];
    for (args, code, needles) in cases {
        case(&args, code, needles);
    }
}

/// Every command that computes takes `--device cuda`, and a build without the feature says so.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_usage_error() {
    let needle: &[&str] = &["built without the `cuda` feature"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["train", "--zoo", "{dir}/z0", "--out", "{dir}/new-model"],
        vec![
            "sample",
            "--model",
            "{dir}/m0",
            "--n",
            "1",
            "--out",
            "{dir}/new.safetensors",
        ],
        vec!["eval", "--model", "{dir}/m0"],
        vec![
            "finetune",
            "--model",
            "{dir}/m0",
            "--out",
            "{dir}/new-ft",
            "--dataset",
            "mnist8",
        ],
        vec![
            "shift-test",
            "--zoo",
            "{dir}/z0",
            "--shift",
            "digits",
            "--methods",
            "detectron",
            "--out",
            "{dir}/new-shift",
        ],
        vec![
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-8-10",
            "--runs",
            "1",
            "--out",
            "{dir}/new-zoo",
        ],
    ];
    for mut args in cases {
        args.extend(["--device", "cuda"]);
        case(&args, 2, needle);
    }
}

#[test]
fn an_altered_training_checkpoint_is_not_resumed_from() {
    let f = fixture();
    let tmp = common::temp_dir("bad-input-ckpt");
    let out = tmp.join("m");
    let zoo = f.dir.join("z0");
    let args: Vec<String> = [
        "train",
        "--zoo",
        zoo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--field",
        "mlp",
        "--hidden",
        "128",
        "--depth",
        "2",
        "--batch-size",
        "32",
        "--steps",
        "4000",
        "--eval-every",
        "50",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(&args)
        .env("NMFLOW_DATA", &f.data)
        .spawn()
        .unwrap();
    let state = out.join("checkpoint/state.json");
    let start = std::time::Instant::now();
    while !state.exists() && start.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(std::time::Duration::from_millis(30));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("train.json").exists(), "killed before the end");
    // The checkpoint is whole (written under another name, then renamed): alter its weights.
    let weights = out.join("checkpoint/field.bin");
    let mut bytes = fs::read(&weights).unwrap();
    bytes[64] ^= 0x10;
    fs::write(&weights, bytes).unwrap();
    // The killed job's lock is stale: taken over, not reported as in use.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    check_in(
        &tmp,
        &args,
        1,
        &["checkpoint/field.bin", "altered or damaged", "delete"],
        &f.data,
    );
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn shift_calibrate_bad_input() {
    let base = [
        "shift-calibrate",
        "{dir}/m0.nmf",
        "--dataset",
        "mnist8",
        "--out",
        "{dir}/new-shift.nmf",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            with(&["--window", "0"]),
            2,
            &["--window, --members and --patience must be at least 1"],
        ),
        (with(&["--members", "0"]), 2, &["must be at least 1"]),
        (
            with(&["--calibration-windows", "5"]),
            2,
            &["--calibration-windows 5 cannot set a threshold at --alpha 0.05: at least 19"],
        ),
        (with(&["--alpha", "1.5"]), 2, &["--alpha must be in (0, 1)"]),
        (
            with(&["--guidance-scale", "-1"]),
            2,
            &["--guidance-scale and --guidance-lambda must be finite"],
        ),
        (
            with(&["--window", "9500"]),
            2,
            &["--window 9500 is larger than the 9000 test inputs of mnist8 after --reserve 1000"],
        ),
        (
            with(&["--anchors", "70000"]),
            2,
            &["--anchors 70000 is more than the 60000 training inputs of mnist8"],
        ),
        (
            with(&["--evaluate", "mnist"]),
            2,
            &["--evaluate mnist: its inputs have 784 values, the classifier takes 64"],
        ),
        (
            with(&["--evaluate", "digits", "--eval-windows", "100"]),
            2,
            &["--evaluate digits: 100 windows of 20 need 2000 inputs, 1797 are available"],
        ),
        (
            with(&["--evaluate", "mnist8", "--eval-windows", "51"]),
            2,
            &[
                "--evaluate mnist8: 51 windows of 20 need 1020 inputs, 1000 are available (--reserve)",
            ],
        ),
        (
            with(&["--evaluate", "svhn"]),
            2,
            &["unknown dataset \"svhn\""],
        ),
        (
            vec![
                "shift-calibrate",
                "{dir}/m0.nmf",
                "--dataset",
                "mnist",
                "--out",
                "{dir}/new-shift.nmf",
            ],
            1,
            &["m0.nmf: the classifier takes 64 inputs but dataset mnist has 784"],
        ),
        (
            vec![
                "shift-calibrate",
                "{dir}/garbage.nmf",
                "--dataset",
                "mnist8",
                "--out",
                "{dir}/new-shift.nmf",
            ],
            1,
            &["garbage.nmf"],
        ),
        (
            vec![
                "shift-calibrate",
                "{dir}/m0.nmf",
                "--dataset",
                "mnist8",
                "--out",
                "{dir}/m0.nmf",
            ],
            1,
            &["m0.nmf already exists", "--force"],
        ),
    ];
    for (args, code, needles) in &cases {
        case(args, *code, needles);
    }
}
