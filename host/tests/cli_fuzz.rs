//! A property test of the command line: random argument vectors, drawn from every flag of the
//! commands that take settings and from values that are out of range, malformed or extreme, go
//! through clap's parser and then through the library's validation (the typed configs'
//! `validate()`, run against a real zoo manifest). Every one must end in `Ok` or an error, never
//! in a panic. Seeded, so a failure reproduces.

use std::path::PathBuf;

use clap::Parser;
use nmflow_host::cli::{Cli, Command};
use nmflow_host::zoo::Manifest;
use nmflow_runtime::Rng;

const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "3",
    "0.5",
    "1.5",
    "-0.5",
    "1e-9",
    "1e9",
    "99999999999",
    "18446744073709551615",
    "18446744073709551616",
    "nan",
    "inf",
    "-inf",
    "",
    "abc",
    "mlp:64-8-10",
    "mlp:64-99999999999-10",
    "mlp:0-1",
    "mlp:",
    "cnn-s",
    "mnist",
    "mnist8",
    "digits",
    "fashion",
    "euler",
    "rk4",
    "dopri5",
    "set",
    "mlp",
    "potential",
    "cfm",
    "mmfm",
    "jko",
    "ot",
    "cosine",
    "gaussian",
    "kaiming",
    "early,epochs",
    "0,100000",
    "1,2,0",
    "fused",
    "burn",
];

const ZOO_FLAGS: &[&str] = &[
    "--dataset",
    "--arch",
    "--runs",
    "--epochs",
    "--batch-size",
    "--optimizer",
    "--lr",
    "--momentum",
    "--checkpoints",
    "--seed",
    "--shard-runs",
    "--heldout",
    "--jobs",
];

const TRAIN_FLAGS: &[&str] = &[
    "--method",
    "--coupling",
    "--spline",
    "--source",
    "--source-std",
    "--sigma",
    "--field",
    "--tau",
    "--hidden",
    "--depth",
    "--time-dim",
    "--steps",
    "--batch-size",
    "--lr",
    "--lr-schedule",
    "--weight-decay",
    "--functional-weight",
    "--functional-batch",
    "--functional-rollout",
    "--functional-samples",
    "--eval-every",
    "--seed",
    "--solver",
    "--solver-steps",
    "--engine",
];

const EVAL_FLAGS: &[&str] = &[
    "--n",
    "--solver",
    "--steps",
    "--seed",
    "--downstream",
    "--downstream-epochs",
];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(u32::try_from(from.len()).unwrap()) as usize]
}

#[test]
fn random_arguments_never_panic_in_the_parser_or_the_validators() {
    let zoo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
    let manifest = Manifest::read(&zoo).unwrap();
    let zoo_s = zoo.to_str().unwrap().to_string();
    let mut rng = Rng::new(2026, 12);
    let (mut parsed, mut valid) = (0, 0);
    for _ in 0..4000 {
        let which = rng.below(3);
        let (cmd, flags): (&[&str], &[&str]) = match which {
            0 => (&["nmflow", "zoo", "--out", "/nonexistent/z"], ZOO_FLAGS),
            1 => (
                &[
                    "nmflow",
                    "train",
                    "--out",
                    "/nonexistent/m",
                    "--zoo",
                    &zoo_s,
                ],
                TRAIN_FLAGS,
            ),
            _ => (&["nmflow", "eval", "--model", "/nonexistent/m"], EVAL_FLAGS),
        };
        let mut argv: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        for _ in 0..rng.below(6) {
            let flag = pick(&mut rng, flags);
            let value = pick(&mut rng, VALUES);
            // Both spellings: `--flag value` (a leading '-' makes clap see a flag) and `--flag=value`.
            if rng.below(2) == 0 {
                argv.push(format!("{flag}={value}"));
            } else {
                argv.extend([flag.to_string(), value.to_string()]);
            }
        }
        let Ok(cli) = Cli::try_parse_from(&argv) else {
            continue;
        };
        parsed += 1;
        let ok = match cli.command {
            Command::Zoo(a) => a.to_config().is_ok(),
            Command::Train(a) => a.to_request().is_ok_and(|r| {
                r.resolve_with(&manifest, &zoo, "0".repeat(64))
                    .validate(&manifest)
                    .is_ok()
            }),
            Command::Eval(a) => a
                .to_options(nmflow_host::flow::solver::Solver::Rk4)
                .validate()
                .is_ok(),
            _ => unreachable!("only zoo, train and eval are drawn"),
        };
        valid += usize::from(ok);
    }
    // The draws reach the validators, and both outcomes happen.
    assert!(parsed > 500, "only {parsed} argument vectors parsed");
    assert!(valid > 50 && valid < parsed, "{valid} of {parsed} valid");
}
