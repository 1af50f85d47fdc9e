//! The meta-model commands on bad input: a missing zoo, a zoo of another version, a directory that
//! is not a model. (Training itself is tested in the `nmflow-tests` crate.)

use std::process::Command;

fn nmflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn train_and_eval_refuse_bad_input() {
    let tmp = std::env::temp_dir().join(format!("nmflow-test-{}-meta-cli", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let missing = tmp.join("nozoo");
    let out = nmflow(&[
        "train",
        "--zoo",
        missing.to_str().unwrap(),
        "--out",
        tmp.join("m").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest: not a zoo directory"));

    // A zoo of a future format version.
    let future = tmp.join("future");
    std::fs::create_dir_all(&future).unwrap();
    std::fs::write(
        future.join("manifest.json"),
        r#"{"format":"nmflow-zoo","format_version":99}"#,
    )
    .unwrap();
    let out = nmflow(&[
        "train",
        "--zoo",
        future.to_str().unwrap(),
        "--out",
        tmp.join("m").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("zoo format version 99 is not supported")
    );

    let out = nmflow(&["eval", "--model", tmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a model directory"));
    std::fs::remove_dir_all(tmp).unwrap();
}
