//! Synthesizes classifiers from a model file with the runtime (the code a device runs) and prints
//! the work done; used to count instructions per multiply-accumulate with
//! `valgrind --tool=callgrind`:
//!
//! ```sh
//! cargo build --release -p nmflow-runtime --example synthesize_file
//! valgrind --tool=callgrind target/release/examples/synthesize_file MODEL.nmf 10
//! ```
use nmflow_runtime::{ModelView, Workspace, synthesize_with};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: synthesize_file MODEL.nmf [COUNT]")?;
    let count: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(1);
    let bytes = std::fs::read(&path)?;
    let model = ModelView::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut ws: Box<Workspace<262_144>> = Box::default();
    let mut checksum = 0.0f64;
    let mut nfe = 0;
    for seed in 0..count {
        let (w, used) =
            synthesize_with(&model, seed, model.file.solver, model.file.steps, &mut ws)?;
        checksum += w.iter().map(|&v| f64::from(v)).sum::<f64>();
        nfe = used;
    }
    let macs = model
        .macs_per_evaluation()
        .saturating_mul(u64::from(nfe))
        .saturating_mul(count);
    println!(
        "synthesized {count} × {} parameters, NFE {nfe}, {macs} field MACs, checksum {checksum:.6}",
        model.num_params()
    );
    Ok(())
}
