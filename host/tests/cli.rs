//! The `nmflow` command line on bad input: clear messages and exit codes (1 failure, 2 usage),
//! and a zoo job killed with SIGKILL that resumes to the same bytes.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::nmflow;

fn expect(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

const SMALL: &[&str] = &[
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
    "1",
    "--batch-size",
    "256",
    "--quiet",
    "--jobs",
    "1",
];

fn zoo_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = SMALL.to_vec();
    v.extend(["--out", out]);
    v.extend(extra);
    v
}

#[test]
fn usage_errors_exit_2() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-usage");
    let out = tmp.join("z");
    let out = out.to_str().unwrap();
    expect(
        &nmflow(&zoo_args(out, &["--arch", "resnet18"]), &data),
        2,
        "unknown architecture \"resnet18\"",
    );
    expect(
        &nmflow(&zoo_args(out, &["--runs", "0"]), &data),
        2,
        "--runs must be at least 1",
    );
    expect(
        &nmflow(&zoo_args(out, &["--checkpoints", "0,100000"]), &data),
        2,
        "checkpoint step 100000 is past the end of training",
    );
    expect(
        &nmflow(&zoo_args(out, &["--arch", "mlp:784-10-10"]), &data),
        2,
        "takes 784 inputs, but dataset mnist8 has 64",
    );
    expect(
        &nmflow(
            &zoo_args(out, &["--dataset", "digits", "--arch", "mlp:64-10"]),
            &data,
        ),
        2,
        "evaluation/shift set",
    );
    let cfg = tmp.join("bad.toml");
    fs::write(&cfg, "runz = 3\n").unwrap();
    expect(
        &nmflow(&zoo_args(out, &["--config", cfg.to_str().unwrap()]), &data),
        2,
        "unknown field `runz`",
    );
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn missing_and_corrupt_data_exit_1() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-data");
    let empty = tmp.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = tmp.join("z");
    let out = out.to_str().unwrap();
    expect(
        &nmflow(&zoo_args(out, &[]), &empty),
        1,
        "not found; run `nmflow data fetch` first",
    );

    // A copy of MNIST with one label changed: the checksum names the file.
    let bad = tmp.join("bad");
    fs::create_dir_all(bad.join("mnist")).unwrap();
    for f in fs::read_dir(data.join("mnist")).unwrap() {
        let f = f.unwrap();
        fs::copy(f.path(), bad.join("mnist").join(f.file_name())).unwrap();
    }
    let labels = bad.join("mnist/t10k-labels-idx1-ubyte.gz");
    let mut plain = nmflow_host::io::read_maybe_gz(&labels).unwrap();
    plain[100] = (plain[100] + 1) % 10;
    fs::write(&labels, nmflow_host::io::gzip(&plain).unwrap()).unwrap();
    expect(
        &nmflow(&zoo_args(out, &[]), &bad),
        1,
        "t10k-labels-idx1-ubyte.gz: checksum mismatch",
    );
    // A truncated gzip stream is an I/O error naming the file.
    let images = bad.join("mnist/train-images-idx3-ubyte.gz");
    let bytes = fs::read(&images).unwrap();
    fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    expect(
        &nmflow(&zoo_args(out, &[]), &bad),
        1,
        "train-images-idx3-ubyte.gz",
    );
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn conflicting_output_is_refused_and_killed_job_resumes() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-resume");
    let reference = tmp.join("ref");
    let r = nmflow(&zoo_args(reference.to_str().unwrap(), &["--json"]), &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for key in [
        "runs",
        "checkpoints_per_run",
        "num_params",
        "test_acc_mean",
        "test_acc_min",
        "test_acc_max",
        "seconds",
        "out",
    ] {
        assert!(json.get(key).is_some(), "--json lacks {key}: {json}");
    }
    assert_eq!(json["runs"], 4);

    // Same directory, other settings: refused with exit 1 and a hint.
    let out = nmflow(
        &zoo_args(reference.to_str().unwrap(), &["--seed", "5"]),
        &data,
    );
    expect(
        &out,
        1,
        "already holds a zoo with different settings (seed: existing 0, requested 5)",
    );
    // An output path that is a file.
    let file = tmp.join("file");
    fs::write(&file, b"x").unwrap();
    expect(
        &nmflow(&zoo_args(file.to_str().unwrap(), &[]), &data),
        1,
        "is not a directory",
    );

    // kill -9 once the first shard exists, then rerun: identical files.
    let victim = tmp.join("victim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(zoo_args(victim.to_str().unwrap(), &[]))
        .arg("--data-dir")
        .arg(&data)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !victim.join("shard-00000.safetensors").exists()
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !victim.join("manifest.json").exists(),
        "killed before the end"
    );
    let again = nmflow(&zoo_args(victim.to_str().unwrap(), &[]), &data);
    assert!(again.status.success());
    let summary = String::from_utf8_lossy(&again.stdout);
    assert!(summary.starts_with("zoo: 4 runs"), "{summary}");
    for name in [
        "manifest.json",
        "settings.json",
        "shard-00000.safetensors",
        "shard-00003.safetensors",
    ] {
        assert_eq!(
            fs::read(reference.join(name)).unwrap(),
            fs::read(victim.join(name)).unwrap(),
            "{name}"
        );
    }

    // inspect verifies hashes and reports a damaged shard with exit 1.
    let ok = nmflow_plain(&["inspect", victim.to_str().unwrap()]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("shards: 4 verified"));
    let shard = victim.join("shard-00002.safetensors");
    let mut bytes = fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&shard, bytes).unwrap();
    expect(
        &nmflow_plain(&["inspect", victim.to_str().unwrap()]),
        1,
        "1 shard(s) failed verification",
    );
    expect(
        &nmflow_plain(&["inspect", tmp.to_str().unwrap()]),
        1,
        "not something nmflow can inspect",
    );
    fs::remove_dir_all(tmp).unwrap();
}

fn nmflow_plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .output()
        .unwrap()
}

/// The burn engine's training in the resume tests: the functional term on, so its data draws
/// count too.
const BURN_TRAINING: [&str; 8] = [
    "--steps",
    "1500",
    "--eval-every",
    "25",
    "--functional-weight",
    "0.1",
    "--functional-batch",
    "64",
];

/// `nmflow train` killed with SIGKILL after a checkpoint resumes from it and ends with the same
/// weights and loss log as an uninterrupted run: burn's engine ...
#[test]
fn killed_training_resumes_to_the_same_bytes() {
    killed_training_resumes("cli-train-resume", &BURN_TRAINING, "burn");
}

/// ... with a moving average of the weights (`--ema`: the checkpoint holds the average beside the
/// trained weights, and the model keeps the average) ...
#[test]
fn killed_training_with_an_average_resumes_to_the_same_bytes() {
    let args = [BURN_TRAINING.as_slice(), &["--ema", "0.99"]].concat();
    killed_training_resumes("cli-train-resume-ema", &args, "burn");
}

/// ... the fused CPU trainer of the MLP field (its own optimizer file in the checkpoint) ...
#[test]
fn killed_fused_training_resumes_to_the_same_bytes() {
    killed_training_resumes(
        "cli-train-resume-fused",
        &["--steps", "4000", "--eval-every", "50"],
        "fused",
    );
}

/// ... and the fused trainer of the set field with the functional term on the sampler's rollout
/// (its source, rollout and image draws come from the step's own stream).
#[test]
fn killed_fused_set_training_resumes_to_the_same_bytes() {
    let args = [
        BURN_TRAINING.as_slice(),
        &["--field", "set", "--functional-rollout", "2"],
    ]
    .concat();
    killed_training_resumes("cli-train-resume-fused-set", &args, "fused");
}

/// A field with the step-size input (`--step-input`) trains on either engine, samples and
/// evaluates at any step count on the host, exports and synthesizes on the device runtime, and is
/// refused with a usage error where the step size is not fed yet (fine-tuning).
#[test]
fn a_step_size_input_model_samples_exports_and_runs_on_the_device() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-step-input");
    let zoo = tmp.join("zoo");
    let z = nmflow(&zoo_args(zoo.to_str().unwrap(), &[]), &data);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let model = tmp.join("model");
    let model_s = model.to_str().unwrap();
    let train = |out: &str, engine: &str| {
        nmflow(
            &[
                "train",
                "--zoo",
                zoo.to_str().unwrap(),
                "--out",
                out,
                "--field",
                "set",
                "--hidden",
                "16",
                "--depth",
                "1",
                "--steps",
                "40",
                "--eval-every",
                "20",
                "--functional-batch",
                "32",
                "--functional-rollout",
                "2",
                "--functional-rollout-max",
                "4",
                "--step-input",
                "--engine",
                engine,
                "--quiet",
            ],
            &data,
        )
    };
    let r = train(model_s, "auto");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let config = fs::read_to_string(model.join("config.json")).unwrap();
    assert!(config.contains("\"step_input\": true"), "{config}");
    let summary = fs::read_to_string(model.join("train.json")).unwrap();
    assert!(summary.contains("\"engine\": \"fused\""), "{summary}");
    let on_burn = tmp.join("burn");
    let r = train(on_burn.to_str().unwrap(), "burn");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let e = nmflow(
        &[
            "eval",
            "--model",
            model_s,
            "--n",
            "4",
            "--steps",
            "2,4,8",
            "--downstream",
            "0",
            "--json",
        ],
        &data,
    );
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let json: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    let rows = json["generated"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{json}");
    for row in rows {
        let acc = row["acc_mean"].as_f64().unwrap();
        assert!(acc.is_finite() && acc > 0.0, "{json}");
    }
    let samples = tmp.join("s.safetensors");
    let r = nmflow(
        &[
            "sample",
            "--model",
            model_s,
            "--n",
            "3",
            "--steps",
            "3",
            "--out",
            samples.to_str().unwrap(),
        ],
        &data,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(samples.is_file());
    // The model file carries the input, and the device feeds it: `edge-eval` synthesizes with it.
    let file = tmp.join("m.nmf");
    let r = nmflow_plain(&[
        "export",
        "--model",
        model_s,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let info = nmflow_plain(&["inspect", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("with the step size 1/steps as a second input"),
        "{text}"
    );
    let edge = nmflow(
        &["edge-eval", file.to_str().unwrap(), "--n", "4", "--json"],
        &data,
    );
    assert!(
        edge.status.success(),
        "{}",
        String::from_utf8_lossy(&edge.stderr)
    );
    // Where the step size is not fed yet: a usage error.
    expect(
        &nmflow(
            &[
                "finetune",
                "--model",
                model_s,
                "--out",
                tmp.join("ft").to_str().unwrap(),
                "--dataset",
                "mnist8",
            ],
            &data,
        ),
        2,
        "nmflow finetune does not take a field with a step-size input yet",
    );
    fs::remove_dir_all(tmp).unwrap();
}

fn killed_training_resumes(name: &str, extra: &[&str], engine: &str) {
    let data = common::data_dir();
    let tmp = common::temp_dir(name);
    let zoo = tmp.join("zoo");
    let z = nmflow(&zoo_args(zoo.to_str().unwrap(), &[]), &data);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let train = |out: &Path| -> Vec<String> {
        [
            "train",
            "--zoo",
            zoo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--hidden",
            "128",
            "--depth",
            "2",
            "--batch-size",
            "32",
            "--quiet",
        ]
        .iter()
        .chain(if extra.contains(&"--field") {
            &[][..]
        } else {
            &["--field", "mlp"][..]
        })
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    if engine == "fused" {
        // What the fused trainers do not cover is a usage error (here: the moving average).
        let mut args = train(&tmp.join("ema"));
        args.extend(["--engine", "fused", "--ema", "0.9"].map(String::from));
        expect(
            &nmflow(&args_for(&args), &data),
            2,
            "--engine fused trains the MLP field",
        );
        assert!(
            !tmp.join("ema").exists(),
            "nothing is written on a usage error"
        );
    }
    let reference = tmp.join("ref");
    let args = train(&reference);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = nmflow(&args, &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for f in ["loss.csv", "loss.png", "field.bin", "train.json"] {
        assert!(reference.join(f).is_file(), "{f}");
    }
    let summary = fs::read_to_string(reference.join("train.json")).unwrap();
    assert!(
        summary.contains(&format!("\"engine\": \"{engine}\"")),
        "{summary}"
    );
    assert!(!reference.join("checkpoint").exists(), "removed at the end");
    let victim = tmp.join("victim");
    kill_after_checkpoint_and_resume(&train(&victim), &victim, "train.json", &data);
    assert!(
        fs::read(reference.join("field.bin")).unwrap()
            == fs::read(victim.join("field.bin")).unwrap(),
        "field.bin differs"
    );
    assert_eq!(
        fs::read_to_string(reference.join("loss.csv")).unwrap(),
        fs::read_to_string(victim.join("loss.csv")).unwrap(),
        "loss.csv"
    );
    let log = fs::read_to_string(victim.join("loss.csv")).unwrap();
    assert!(log.starts_with(
        "step,train_loss,heldout_loss,functional_loss,validation_functional_loss\n10,"
    ));
    if extra.contains(&"--field") {
        // `--engine auto` resumes a run begun on the burn engine with burn, from its checkpoint.
        let begun = tmp.join("begun-on-burn");
        // A shorter run than the others (burn's set field is the slow one).
        let short: Vec<String> = train(&begun)
            .into_iter()
            .map(|a| if a == "1500" { "200".into() } else { a })
            .collect();
        let mut args = short.clone();
        args.extend(["--engine", "burn"].map(String::from));
        kill_after_checkpoint(&args, &begun, "train.json", &data);
        let r = nmflow(&args_for(&short), &data);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let summary = fs::read_to_string(begun.join("train.json")).unwrap();
        assert!(summary.contains("\"engine\": \"burn\""), "{summary}");
    }
    if extra.contains(&"--functional-weight") {
        // With the functional term, every held-out evaluation also scores the sampler on the
        // fixed validation draws (the last column).
        let evaluated: Vec<&str> = log.lines().filter(|l| l.starts_with("25,")).collect();
        assert_eq!(evaluated.len(), 1, "{log}");
        let last = evaluated[0].rsplit(',').next().unwrap();
        assert!(last.parse::<f64>().is_ok_and(f64::is_finite), "{log}");
    }

    fs::remove_dir_all(tmp).unwrap();
}

fn args_for(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A zoo trained as a job array (three `--shard I/3` processes at once into one folder) and
/// merged is byte-identical to the same zoo trained by one job; merging refuses a missing shard.
#[test]
fn sharded_tasks_merge_to_the_zoo_one_job_makes() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-shards");
    let single = tmp.join("single");
    let arr = tmp.join("array");
    let r = nmflow(&zoo_args(single.to_str().unwrap(), &[]), &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            Command::new(env!("CARGO_BIN_EXE_nmflow"))
                .args(zoo_args(arr.to_str().unwrap(), &["--shard", &shard]))
                .arg("--data-dir")
                .arg(&data)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut t in tasks {
        assert!(t.wait().unwrap().success());
    }
    assert!(
        !arr.join("manifest.json").exists(),
        "tasks leave the manifest to merge"
    );
    let merged = nmflow_plain(&[
        "zoo",
        "merge",
        arr.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(json["runs"], 4);
    for name in [
        "manifest.json",
        "settings.json",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
        "shard-00002.safetensors",
        "shard-00003.safetensors",
    ] {
        assert_eq!(
            fs::read(single.join(name)).unwrap(),
            fs::read(arr.join(name)).unwrap(),
            "{name}"
        );
    }
    fs::remove_file(arr.join("shard-00002.safetensors")).unwrap();
    expect(
        &nmflow_plain(&[
            "zoo",
            "merge",
            arr.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]),
        1,
        "1 of 4 shards are missing or unfinished (shard 2)",
    );
    fs::remove_dir_all(tmp).unwrap();
}

/// `nmflow finetune` on a small set-field model: the reward rises, the output is a model
/// directory the other commands take, and a run killed after a checkpoint resumes to the same
/// weights, log and measurements as an uninterrupted one.
#[test]
fn finetuning_raises_the_reward_and_resumes_to_the_same_bytes() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-finetune");
    let zoo = tmp.join("zoo");
    let z = nmflow(&zoo_args(zoo.to_str().unwrap(), &["--runs", "16"]), &data);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let base = tmp.join("base");
    let t = nmflow(
        &[
            "train",
            "--zoo",
            zoo.to_str().unwrap(),
            "--out",
            base.to_str().unwrap(),
            "--field",
            "set",
            "--hidden",
            "16",
            "--depth",
            "1",
            "--steps",
            "150",
            "--functional-weight",
            "0",
            "--quiet",
        ],
        &data,
    );
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let finetune = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut args = [
            "finetune",
            "--model",
            base.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--dataset",
            "mnist8",
            "--iterations",
            "60",
            "--eval-every",
            "10",
            "--trajectories",
            "8",
            "--steps",
            "10",
            "--lambda",
            "300",
            "--lr",
            "1e-3",
            "--reward-images",
            "128",
            "--eval-samples",
            "16",
            "--quiet",
            "--json",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let reference = tmp.join("ref");
    let r = nmflow(&args_for(&finetune(&reference, &[])), &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let (before, after) = (
        summary["reward_before"].as_f64().unwrap(),
        summary["reward_after"].as_f64().unwrap(),
    );
    assert!(after > before + 0.02, "reward {before} → {after}");
    // The model's own sampler (the SDE) is reported, and the run is not flagged.
    let sde_acc = summary["sde_acc_after"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&sde_acc), "{summary}");
    assert!(summary.get("worse_than_base").is_none(), "{summary}");
    // Adjoint matching also measures the law it tilts: the memoryless SDE's classifiers.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reference.join("finetune.json")).unwrap()).unwrap();
    for m in record["measurements"].as_array().unwrap() {
        let (acc, reward) = (m["sde_acc_mean"].as_f64(), m["sde_reward"].as_f64());
        assert!(acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{m}");
        assert!(reward.is_some_and(|r| r.is_finite() && r < 0.0), "{m}");
    }
    for f in [
        "field.bin",
        "train.json",
        "finetune.json",
        "loss.csv",
        "finetune-reward.png",
        "finetune-accuracy.png",
    ] {
        assert!(reference.join(f).is_file(), "{f}");
    }
    assert!(!reference.join("checkpoint").exists(), "removed at the end");
    let sampled = tmp.join("g.safetensors");
    let s = Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args([
            "sample",
            "--model",
            reference.to_str().unwrap(),
            "--n",
            "2",
            "--out",
            sampled.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let again = nmflow(&args_for(&finetune(&reference, &[])), &data);
    assert!(
        again.status.success(),
        "a finished run is returned as it is"
    );

    let victim = tmp.join("victim");
    let resumed =
        kill_after_checkpoint_and_resume(&finetune(&victim, &[]), &victim, "finetune.json", &data);
    assert_same_run(&reference, &victim, &summary, &resumed);

    // The direct method with a rollout range: each iteration's step count comes from the
    // iteration's seed, so a resumed run draws the same counts.
    let range = ["--method", "direct", "--lambda", "1", "--rollout-max", "12"];
    let reference = tmp.join("ref-range");
    let r = nmflow(&args_for(&finetune(&reference, &range)), &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let victim = tmp.join("victim-range");
    let resumed = kill_after_checkpoint_and_resume(
        &finetune(&victim, &range),
        &victim,
        "finetune.json",
        &data,
    );
    assert_same_run(&reference, &victim, &summary, &resumed);
    fs::remove_dir_all(tmp).unwrap();
}

/// `nmflow train` with no recipe flags is BENCHMARKS.md's two-stage recipe: its base and its
/// model are the bytes of the `train` and `finetune` commands it stands for, a finished run is
/// returned as it is, a run killed in its first stage resumes to the same bytes, and an --out
/// holding a model of another recipe is refused.
#[test]
fn the_default_recipe_is_train_then_finetune_and_resumes() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-two-stage");
    let zoo = tmp.join("zoo");
    let z = nmflow(&zoo_args(zoo.to_str().unwrap(), &["--runs", "16"]), &data);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let zoo_s = zoo.to_str().unwrap().to_string();
    // Shorter than the defaults, which every other setting keeps.
    let short = [
        "--hidden",
        "128",
        "--steps",
        "1500",
        "--eval-every",
        "10",
        "--finetune-iterations",
        "20",
        "--quiet",
        "--json",
    ];
    let default = |out: &Path| -> Vec<String> {
        ["train", "--zoo", &zoo_s, "--out", out.to_str().unwrap()]
            .iter()
            .chain(&short)
            .map(|s| s.to_string())
            .collect()
    };
    let model = tmp.join("model");
    let r = nmflow(&args_for(&default(&model)), &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["finetune"]["iterations"], 20);
    assert_eq!(report["out"], model.join("base").to_str().unwrap());
    assert_eq!(report["finetune"]["out"], model.to_str().unwrap());

    // The two commands it stands for.
    let base = tmp.join("base");
    let t = nmflow(
        &[
            "train",
            "--zoo",
            &zoo_s,
            "--out",
            base.to_str().unwrap(),
            "--field",
            "mlp",
            "--source",
            "gaussian",
            "--source-std",
            "0.1",
            "--coupling",
            "independent",
            "--hidden",
            "128",
            "--depth",
            "2",
            "--steps",
            "1500",
            "--eval-every",
            "10",
            "--lr-schedule",
            "cosine",
            "--solver",
            "euler",
            "--solver-steps",
            "8",
            "--quiet",
        ],
        &data,
    );
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let fine = tmp.join("fine");
    let f = nmflow(
        &[
            "finetune",
            "--model",
            base.to_str().unwrap(),
            "--out",
            fine.to_str().unwrap(),
            "--dataset",
            "mnist8",
            "--method",
            "direct",
            "--lambda",
            "1",
            "--lr-schedule",
            "cosine",
            "--iterations",
            "20",
            "--eval-every",
            "20",
            "--diagonal",
            "--rollout-max",
            "48",
            "--quiet",
        ],
        &data,
    );
    assert!(f.status.success(), "{}", String::from_utf8_lossy(&f.stderr));
    let same = |a: &Path, b: &Path, file: &str| {
        assert!(
            fs::read(a.join(file)).unwrap() == fs::read(b.join(file)).unwrap(),
            "{file} of {} differs from {}",
            a.display(),
            b.display()
        );
    };
    same(&model.join("base"), &base, "field.bin");
    same(&model, &fine, "field.bin");
    same(&model, &fine, "loss.csv");

    // Finished: returned as it is.
    let again = nmflow(&args_for(&default(&model)), &data);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap()["finetune"]["measurements"],
        report["finetune"]["measurements"]
    );
    // Killed in flow matching, then run again: both stages finish with the same bytes.
    let victim = tmp.join("victim");
    kill_after_checkpoint(&default(&victim), &victim.join("base"), "train.json", &data);
    let resumed = nmflow(&args_for(&default(&victim)), &data);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    same(&model, &victim, "field.bin");
    same(&model.join("base"), &victim.join("base"), "loss.csv");
    // The model is a model directory.
    let sampled = tmp.join("g.safetensors");
    let s = nmflow_plain(&[
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--n",
        "2",
        "--out",
        sampled.to_str().unwrap(),
    ]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    // A model of another recipe in --out is not overwritten.
    let other = nmflow(&args_for(&default(&base)), &data);
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("a model trained without the reward stage"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    fs::remove_dir_all(tmp).unwrap();
}

/// The fine-tuning runs in `reference` and `victim` (killed and resumed) wrote the same weights,
/// log and measurements.
fn assert_same_run(
    reference: &Path,
    victim: &Path,
    summary: &serde_json::Value,
    resumed: &std::process::Output,
) {
    assert!(
        fs::read(reference.join("field.bin")).unwrap()
            == fs::read(victim.join("field.bin")).unwrap(),
        "field.bin differs"
    );
    assert_eq!(
        fs::read_to_string(reference.join("loss.csv")).unwrap(),
        fs::read_to_string(victim.join("loss.csv")).unwrap()
    );
    let resumed: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(summary["measurements"], resumed["measurements"]);
}

/// Runs `args` (writing into `out`), kills it with SIGKILL once its first checkpoint exists,
/// checks that `done` (the file a finished run writes) is absent, and runs it again; returns the
/// second run's output (it must succeed).
fn kill_after_checkpoint_and_resume(
    args: &[String],
    out: &Path,
    done: &str,
    data: &Path,
) -> Output {
    kill_after_checkpoint(args, out, done, data);
    let again = nmflow(&args_for(args), data);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    again
}

/// Starts `nmflow ARGS` and kills it with SIGKILL right after its first checkpoint.
fn kill_after_checkpoint(args: &[String], out: &Path, done: &str, data: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let state = out.join("checkpoint/state.json");
    while !state.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(30));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join(done).exists(), "killed before the end");
}

/// A conditioned field (`--condition support` on a multi-task zoo, with a moving average of its
/// weights) killed with SIGKILL after a checkpoint resumes to the same field, condition and loss
/// log as an uninterrupted run.
#[test]
fn killed_conditioned_training_resumes_to_the_same_bytes() {
    let data = common::data_dir();
    let tmp = common::temp_dir("cli-condition-resume");
    let zoo = tmp.join("zoo");
    let mut args: Vec<&str> = SMALL.to_vec();
    // 24 runs over 4 label permutations (one unseen), in 2 shards.
    args[6] = "24";
    args[10] = "12";
    args.extend(["--out", zoo.to_str().unwrap(), "--tasks", "perm:4:unseen=1"]);
    let z = nmflow(&args, &data);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let train = |out: &Path| -> Vec<String> {
        [
            "train",
            "--zoo",
            zoo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--condition",
            "support",
            "--shots",
            "2",
            "--hidden",
            "32",
            "--depth",
            "1",
            "--steps",
            "400",
            "--eval-every",
            "25",
            "--functional-samples",
            "8",
            "--functional-batch",
            "64",
            "--ema",
            "0.99",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let reference = tmp.join("ref");
    let r = nmflow(&args_for(&train(&reference)), &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let victim = tmp.join("victim");
    kill_after_checkpoint_and_resume(&train(&victim), &victim, "train.json", &data);
    for f in ["field.bin", "condition.bin", "loss.csv"] {
        assert!(
            fs::read(reference.join(f)).unwrap() == fs::read(victim.join(f)).unwrap(),
            "{f} differs"
        );
    }
    fs::remove_dir_all(&tmp).unwrap();
}

/// `inspect` names the memoryless SDE sampler of a version 8 file, and a reader that stops early
/// (`nmflow inspect F | head -1`) ends the output without a panic.
#[test]
fn inspect_names_the_sde_sampler_and_a_closed_stdout_is_not_a_panic() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sde-v8.nmf");
    let info = nmflow_plain(&["inspect", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success() && text.contains("sde × 4 steps (the ODE to t0 = 0.2"),
        "{text}"
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(["inspect", file.to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
}
