//! `nmflow shift-test` end to end on a tiny zoo: the harmful shift (mnist8 classifiers on UCI
//! optdigits) is detected by both detectors while null samples are not flagged more often than
//! calibrated, the outputs are complete, and a rerun (with a record deleted) reproduces the
//! results without redoing finished chunks.

mod common;

use std::fs;

use std::process::Output;

use common::nmflow;

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn harmful_shift_is_detected_and_the_null_is_not() {
    let data = common::data_dir();
    let tmp = common::temp_dir("shift");
    let zoo = tmp.join("zoo");
    let model = tmp.join("model");
    let out = tmp.join("shift");
    let (zoo_s, model_s, out_s) = (
        zoo.to_str().unwrap(),
        model.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    ok(&nmflow(
        &[
            "zoo",
            "--dataset",
            "mnist8",
            "--arch",
            "mlp:64-16-10",
            "--runs",
            "24",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--out",
            zoo_s,
            "--quiet",
        ],
        &data,
    ));
    ok(&nmflow(
        &[
            "train", "--zoo", zoo_s, "--out", model_s, "--field", "set", "--hidden", "32",
            "--depth", "1", "--steps", "300", "--quiet",
        ],
        &data,
    ));
    let args = [
        "shift-test",
        "--zoo",
        zoo_s,
        "--model",
        model_s,
        "--shift",
        "digits",
        "--sizes",
        "50",
        "--seeds",
        "20",
        "--heldout-seeds",
        "8",
        "--p-train",
        "4000",
        "--chunk",
        "7",
        "--methods",
        "detectron,meta,meta-adjoint",
        "--tilt-iterations",
        "2",
        "--tilt-trajectories",
        "4",
        "--tilt-steps",
        "5",
        "--out",
        out_s,
        "--json",
        "--quiet",
    ];
    let first = nmflow(&args, &data);
    ok(&first);
    let j: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    for method in ["detectron", "meta", "meta-adjoint"] {
        for statistic in ["disagreement", "entropy"] {
            let c = &j[method][statistic]["50"];
            for key in ["tpr", "auroc", "fpr_observed", "seconds_per_test"] {
                assert!(c[key].is_number(), "{method} {statistic} {key}: {c}");
            }
        }
        if method == "meta-adjoint" {
            // Two tilt iterations only prove the path runs; its power is measured in BENCHMARKS.md.
            continue;
        }
        // The stronger statistic of each detector separates the shifted samples from the null.
        let best = ["disagreement", "entropy"]
            .iter()
            .map(|s| j[method][*s]["50"]["auroc"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!(best >= 0.9, "{method}: AUROC {best}: {j}");
        let tpr = ["disagreement", "entropy"]
            .iter()
            .map(|s| j[method][*s]["50"]["tpr"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!(tpr >= 0.5, "{method}: TPR {tpr}: {j}");
        for statistic in ["disagreement", "entropy"] {
            let fpr = j[method][statistic]["50"]["fpr_observed"].as_f64().unwrap();
            assert!(fpr <= 0.25, "{method} {statistic}: held-out FPR {fpr}");
        }
    }
    for f in ["shift.json", "shift-run.json", "shift.md", "roc-n50.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let run: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("shift-run.json")).unwrap()).unwrap();
    assert!(
        run["base_p_accuracy"].as_f64().unwrap()
            > run["base_shift_accuracy"].as_f64().unwrap() + 0.05,
        "the shift harms the base classifier: {run}"
    );

    // A rerun finds every chunk done; a deleted chunk is recomputed to the same results.
    let records = out.join("records");
    let mut names: Vec<_> = fs::read_dir(&records)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for n in &names {
        assert!(
            n.with_extension("sha256").is_file(),
            "{n:?} has its checksum"
        );
    }
    // Redo a Detectron chunk (the first, alphabetically).
    // Per method: 28 null tests in chunks of 7, 20 shifted ones in 3.
    assert_eq!(names.len(), 3 * (4 + 3), "{names:?}");
    let victim = names[0].clone();
    let kept = fs::read(&victim).unwrap();
    // An altered record fails its checksum and is computed again, like a deleted one.
    fs::write(&victim, b"{}").unwrap();
    let second = nmflow(&args, &data);
    ok(&second);
    // The same results; only the recomputed chunk's time differs.
    let without_time = |out: &Output| {
        let mut j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for m in j.as_object_mut().unwrap().values_mut() {
            for s in m.as_object_mut().unwrap().values_mut() {
                for c in s.as_object_mut().unwrap().values_mut() {
                    c.as_object_mut().unwrap().remove("seconds_per_test");
                }
            }
        }
        j
    };
    assert_eq!(without_time(&first), without_time(&second));
    let redone: serde_json::Value = serde_json::from_slice(&fs::read(&victim).unwrap()).unwrap();
    let kept: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert_eq!(redone["tests"], kept["tests"], "the same tests to the bit");

    // Members started near the base with ρ = 1 are fresh source samples: the same tests to the bit
    // as the plain meta-detectron; ρ = 0.05 starts them near f's initialization, and they remove
    // fewer null inputs.
    let near = |rho: &str| -> serde_json::Value {
        let dir = tmp.join(format!("near-{rho}"));
        let mut a: Vec<&str> = args.to_vec();
        let at = a.iter().position(|x| *x == "--methods").unwrap() + 1;
        a[at] = "meta";
        let dir_s = dir.to_str().unwrap().to_string();
        let out_at = a.iter().position(|x| *x == "--out").unwrap() + 1;
        a[out_at] = &dir_s;
        a.extend(["--start-near-base", rho]);
        let run = nmflow(&a, &data);
        ok(&run);
        serde_json::from_slice(&fs::read(dir.join("records/meta-null-n50-s0000.json")).unwrap())
            .unwrap()
    };
    let plain: serde_json::Value =
        serde_json::from_slice(&fs::read(records.join("meta-null-n50-s0000.json")).unwrap())
            .unwrap();
    assert_eq!(near("1")["tests"], plain["tests"]);
    let removed = |r: &serde_json::Value| -> f64 {
        r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let c = t["counts"].as_array().unwrap();
                (c[0].as_f64().unwrap() - c.last().unwrap().as_f64().unwrap()) / c.len() as f64
            })
            .sum()
    };
    assert!(
        removed(&near("0.05")) < removed(&plain),
        "near f's initialization, members agree with f more on null samples"
    );

    // Another shifted set with --null-from: the null tests are copied, not redone, and the
    // benign shift is not told apart from them like the harmful one.
    let benign = tmp.join("benign");
    let mut b: Vec<&str> = args.to_vec();
    b[6] = "mnist8:contrast=0.9";
    let benign_s = benign.to_str().unwrap().to_string();
    let out_at = b.iter().position(|a| *a == "--out").unwrap() + 1;
    b[out_at] = &benign_s;
    b.extend(["--null-from", out_s]);
    let copied = nmflow(&b, &data);
    ok(&copied);
    for name in &names {
        let file = name.file_name().unwrap();
        if file.to_str().unwrap().contains("-null-") {
            assert_eq!(
                fs::read(name).unwrap(),
                fs::read(benign.join("records").join(file)).unwrap(),
                "{file:?} copied as it was"
            );
        }
    }
    let jb: serde_json::Value = serde_json::from_slice(&copied.stdout).unwrap();
    let auroc = |j: &serde_json::Value| j["detectron"]["entropy"]["50"]["auroc"].as_f64().unwrap();
    assert!(
        auroc(&jb) < auroc(&j),
        "benign {} vs harmful {}",
        auroc(&jb),
        auroc(&j)
    );
    // Null tests of other settings are refused.
    let mut wrong = b.clone();
    let seeds_at = wrong.iter().position(|a| *a == "--seeds").unwrap() + 1;
    wrong[seeds_at] = "19";
    let fresh = tmp.join("fresh").to_str().unwrap().to_string();
    wrong[out_at] = &fresh;
    let refused = nmflow(&wrong, &data);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("differ in more than --shift"));
    assert!(!tmp.join("fresh").exists(), "nothing written");

    // Other settings in the same folder are refused.
    let mut other: Vec<&str> = args.to_vec();
    other[12] = "21"; // --heldout-seeds
    let refused = nmflow(&other, &data);
    assert_eq!(refused.status.code(), Some(1));
    fs::remove_dir_all(tmp).unwrap();
}

/// `nmflow shift-calibrate` on the firmware's real mnist8 model: the threshold is set on null
/// windows and holds on held-out ones, the guided detector flags optdigits windows, the written
/// file carries the section the JSON reports, a rerun writes the same bytes.
#[test]
fn edge_section_is_calibrated_and_detects_optdigits() {
    let data = common::data_dir();
    let tmp = common::temp_dir("edge-shift");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-examples/app/assets/model.nmf");
    let out = tmp.join("shift.nmf");
    let args = [
        "shift-calibrate",
        model.to_str().unwrap(),
        "--dataset",
        "mnist8",
        "--out",
        out.to_str().unwrap(),
        "--calibration-windows",
        "39",
        "--heldout-windows",
        "20",
        "--evaluate",
        "mnist8,digits",
        "--eval-windows",
        "20",
        "--json",
        "--quiet",
    ];
    let first = nmflow(&args, &data);
    ok(&first);
    let j: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let bytes = fs::read(&out).unwrap();
    assert_eq!(j["bytes"].as_u64().unwrap() as usize, bytes.len());
    let view = nmflow_runtime::ModelView::parse(&bytes).unwrap();
    let section = view.file.shift.expect("a shift section");
    assert_eq!(section.window, 20);
    assert_eq!(section.calibration_windows, 39);
    assert_eq!(
        f64::from(section.threshold),
        j["tilted"]["entropy"]["threshold"].as_f64().unwrap()
    );
    let rate = |run: &str, stat: &str, key: &str, view: &str| -> f64 {
        j[run][stat][key]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == view)
            .unwrap()[1]
            .as_f64()
            .unwrap()
    };
    // Calibrated: at most α·(n+1)/n of the calibration windows above the threshold; held-out null
    // windows and the firmware's own mnist8 windows flagged rarely.
    assert!(j["fpr_calibration"].as_f64().unwrap() <= 0.05 * 40.0 / 39.0 + 1e-6);
    assert!(j["fpr_heldout"].as_f64().unwrap() <= 0.2, "{j}");
    assert!(rate("tilted", "entropy", "flagged", "mnist8") <= 0.2, "{j}");
    // Detected: optdigits windows mostly flagged and well separated from the null.
    assert!(rate("tilted", "entropy", "flagged", "digits") >= 0.6, "{j}");
    assert!(rate("tilted", "entropy", "auroc", "digits") >= 0.9, "{j}");
    assert!(j["untilted"]["guidance_scale"].as_f64().unwrap() == 0.0);
    let inspected = std::process::Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(["inspect", out.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    ok(&inspected);
    let ij: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(ij["version"], nmflow_format::FORMAT_VERSION);
    assert_eq!(ij["shift"]["window"], 20);
    assert_eq!(ij["shift"]["anchors"], 32);
    assert_eq!(
        ij["shift"]["threshold"].as_f64().unwrap() as f32,
        section.threshold
    );
    let again = nmflow(&[&args[..], &["--force"]].concat(), &data);
    ok(&again);
    assert_eq!(fs::read(&out).unwrap(), bytes, "same seed, same bytes");
    fs::remove_dir_all(tmp).unwrap();
}
