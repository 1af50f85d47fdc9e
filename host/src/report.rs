//! `nmflow report DIR`: one page a person can open for a run folder. It gathers what the other
//! commands left there (zoo manifests, model settings and training summaries, evaluation and
//! device reports as JSON, and every PNG chart) into `report.md` and `report.html` in `DIR`.
//!
//! It reads only files nmflow writes and shows their numbers as they are; a file it cannot parse
//! is listed with the reason instead of stopping the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::io::write_atomic;

/// Folder depth searched below the run folder.
const MAX_DEPTH: usize = 3;

/// One section of the report: a folder with something nmflow wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Section {
    /// The folder, relative to the run folder.
    pub folder: String,
    /// What the folder is: `zoo`, `model` or `files`.
    pub kind: String,
    /// `(name, value)` rows of its key figures.
    pub facts: Vec<(String, String)>,
    /// Tables: a title, a header row and rows.
    pub tables: Vec<Table>,
    /// Charts (PNG), relative to the run folder.
    pub charts: Vec<String>,
    /// Files that could not be read, with the reason.
    pub problems: Vec<String>,
}

/// A table of the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Table {
    /// Title.
    pub title: String,
    /// Header.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// What `nmflow report` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ReportSummary {
    /// The Markdown page.
    pub markdown: PathBuf,
    /// The HTML page.
    pub html: PathBuf,
    /// Sections (folders with results).
    pub sections: Vec<Section>,
}

/// Gathers the results in `dir` and writes `report.md` and `report.html` there.
///
/// # Errors
/// `dir` is not a readable folder, or a page cannot be written.
pub fn write_report(dir: &Path) -> std::io::Result<ReportSummary> {
    let mut folders = Vec::new();
    collect_folders(dir, 0, &mut folders)?;
    folders.sort();
    let sections: Vec<Section> = folders.iter().filter_map(|f| section(dir, f)).collect();
    let title = format!("nmflow report: {}", dir.display());
    let markdown = dir.join("report.md");
    let html = dir.join("report.html");
    write_atomic(&markdown, to_markdown(&title, &sections).as_bytes())?;
    write_atomic(&html, to_html(&title, &sections).as_bytes())?;
    Ok(ReportSummary {
        markdown,
        html,
        sections,
    })
}

fn collect_folders(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    out.push(dir.to_path_buf());
    if depth == MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // Checkpoints in progress are not results.
        let skip = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("checkpoint"));
        if path.is_dir() && !skip {
            collect_folders(&path, depth + 1, out)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path, problems: &mut Vec<String>) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{}: {e}", path.display()));
            None
        }
    }
}

/// A number as people read it: percentages for accuracies, four significant digits otherwise.
fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(
            || n.to_string(),
            |f| {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{f:.0}")
                } else {
                    format!("{f:.4}")
                }
            },
        ),
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".into(), |f| format!("{:.2} %", 100.0 * f))
}

fn section(root: &Path, folder: &Path) -> Option<Section> {
    let rel = folder.strip_prefix(root).map_or_else(
        |_| folder.display().to_string(),
        |p| p.display().to_string(),
    );
    let mut s = Section {
        folder: if rel.is_empty() { ".".into() } else { rel },
        ..Section::default()
    };
    let mut problems = Vec::new();
    if let Some(m) = read_json(&folder.join("manifest.json"), &mut problems) {
        s.kind = "zoo".into();
        zoo_facts(&m, &mut s);
    }
    if let Some(c) = read_json(&folder.join("config.json"), &mut problems) {
        s.kind = "model".into();
        model_facts(
            &c,
            read_json(&folder.join("train.json"), &mut problems),
            &mut s,
        );
    }
    if let Some(e) = read_json(&folder.join("eval.json"), &mut problems) {
        eval_tables(&e, &mut s);
    }
    for name in ["edge.json", "edge-eval.json"] {
        if let Some(e) = read_json(&folder.join(name), &mut problems) {
            let keys = [
                "field_kind",
                "quant",
                "bytes",
                "nfe",
                "macs_per_synthesis",
                "workspace_bytes",
                "ms_per_synthesis",
            ];
            for k in keys {
                if let Some(v) = e.get(k) {
                    s.facts.push((format!("device {k}"), show(v)));
                }
            }
            for k in ["acc_mean", "acc_min", "acc_max"] {
                if let Some(v) = e.get(k) {
                    s.facts.push((format!("device {k}"), pct(v)));
                }
            }
        }
    }
    let mut charts: Vec<String> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .filter_map(|p| p.strip_prefix(root).ok().map(|r| r.display().to_string()))
        .collect();
    charts.sort();
    s.charts = charts;
    s.problems.extend(problems);
    if s.kind.is_empty() {
        if s.facts.is_empty() && s.tables.is_empty() && s.charts.is_empty() && s.problems.is_empty()
        {
            return None;
        }
        s.kind = "files".into();
    }
    Some(s)
}

fn zoo_facts(m: &Value, s: &mut Section) {
    let cfg = &m["config"];
    for (name, v) in [
        ("dataset", &cfg["dataset"]),
        ("architecture", &cfg["arch"]),
        ("runs", &cfg["runs"]),
        ("epochs", &cfg["epochs"]),
        ("optimizer", &cfg["optimizer"]),
        ("learning rate", &cfg["lr"]),
        ("seed", &cfg["seed"]),
        ("parameters per classifier", &m["num_params"]),
    ] {
        s.facts.push((name.into(), show(v)));
    }
    if let Some(runs) = m["runs"].as_array() {
        for (label, heldout) in [
            ("trained runs (training split)", false),
            ("trained runs (held out)", true),
        ] {
            let accs: Vec<f64> = runs
                .iter()
                .filter(|r| r["heldout"].as_bool() == Some(heldout))
                .filter_map(|r| r["final_test_acc"].as_f64())
                .collect();
            if !accs.is_empty() {
                let mean = accs.iter().sum::<f64>() / accs.len() as f64;
                let min = accs.iter().copied().fold(f64::INFINITY, f64::min);
                s.facts.push((
                    format!("{label}: test accuracy mean / min"),
                    format!(
                        "{:.2} % / {:.2} % ({} runs)",
                        100.0 * mean,
                        100.0 * min,
                        accs.len()
                    ),
                ));
            }
        }
    }
}

fn model_facts(c: &Value, summary: Option<Value>, s: &mut Section) {
    let f = &c["field"];
    for (name, v) in [
        ("method", &c["method"]),
        ("field", &f["kind"]),
        ("field width", &f["hidden"]),
        ("field depth", &f["depth"]),
        ("steps", &c["steps"]),
        ("learning-rate schedule", &c["lr_schedule"]),
        ("functional weight", &c["functional_weight"]),
        ("functional rollout", &c["functional_rollout"]),
        ("sampler", &c["solver"]),
        ("sampler steps", &c["solver_steps"]),
        ("seed", &c["seed"]),
        ("zoo", &c["zoo"]),
    ] {
        s.facts.push((name.into(), show(v)));
    }
    match summary {
        Some(t) => {
            for (name, k) in [
                ("field parameters", "field_params"),
                ("kept step", "best_step"),
                ("best held-out objective", "best_heldout_loss"),
                ("zero-velocity held-out loss", "heldout_zero_loss"),
                ("training seconds", "seconds"),
                ("steps per second", "steps_per_second"),
                ("engine", "engine"),
                ("diverged at step", "diverged_at"),
            ] {
                if let Some(v) = t.get(k) {
                    s.facts.push((name.into(), show(v)));
                }
            }
        }
        None => s.problems.push(
            "train.json missing: training did not finish (rerun `nmflow train` to resume)".into(),
        ),
    }
}

fn eval_tables(e: &Value, s: &mut Section) {
    let mut generated = Table {
        title: "Generated classifiers (test accuracy)".into(),
        header: [
            "solver",
            "steps",
            "NFE",
            "mean",
            "min",
            "max",
            "ms per classifier",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for (label, key) in [
        ("trained (training runs)", "trained_train"),
        ("trained (held out)", "trained_heldout"),
    ] {
        let t = &e[key];
        generated.rows.push(vec![
            label.into(),
            "–".into(),
            "–".into(),
            pct(&t["acc_mean"]),
            pct(&t["acc_min"]),
            pct(&t["acc_max"]),
            "–".into(),
        ]);
    }
    for g in e["generated"].as_array().into_iter().flatten() {
        generated.rows.push(vec![
            show(&g["solver"]),
            show(&g["steps"]),
            show(&g["nfe"]),
            pct(&g["acc_mean"]),
            pct(&g["acc_min"]),
            pct(&g["acc_max"]),
            show(&g["ms_per_classifier"]),
        ]);
    }
    s.tables.push(generated);
    let n = &e["novelty"];
    s.tables.push(Table {
        title: format!(
            "Novelty (classifiers of {} steps; medians)",
            show(&n["steps"])
        ),
        header: ["", "generated", "held-out runs"]
            .map(String::from)
            .to_vec(),
        rows: [
            ("distance to the nearest training run", "nn_dist_median"),
            ("prediction agreement with it", "agreement_median"),
            ("pairwise distance", "pairwise_dist_median"),
            (
                "pairwise distance, hidden units matched",
                "pairwise_dist_aligned_median",
            ),
            (
                "pairwise prediction disagreement",
                "pairwise_disagreement_median",
            ),
        ]
        .iter()
        .map(|(label, k)| {
            vec![
                (*label).into(),
                show(&n[format!("{k}_generated")]),
                show(&n[format!("{k}_heldout")]),
            ]
        })
        .collect(),
    });
    if let Some(r) = e.get("step_robustness").filter(|r| !r.is_null()) {
        s.facts.push((
            "more solver steps: worst drop of the mean (trained count → 4×)".into(),
            format!(
                "{} pp from {} to {} steps",
                show(&r["worst_drop_pp"]),
                show(&r["trained_steps"]),
                show(&r["max_steps_checked"])
            ),
        ));
    }
    if let Some(d) = e.get("downstream").filter(|d| !d.is_null()) {
        s.facts.push((
            "downstream: steps to the zoo's mean accuracy (generated / Kaiming)".into(),
            format!(
                "{} / {} (target {}, budget {} steps)",
                show(&d["steps_generated"]),
                show(&d["steps_kaiming"]),
                pct(&d["target_acc"]),
                show(&d["budget_steps"])
            ),
        ));
    }
}

fn to_markdown(title: &str, sections: &[Section]) -> String {
    let mut md = format!("# {title}\n");
    for s in sections {
        let _ = write!(md, "\n## {} ({})\n\n", s.folder, s.kind);
        if !s.facts.is_empty() {
            md += "| | |\n|---|---|\n";
            for (k, v) in &s.facts {
                let _ = writeln!(md, "| {k} | {v} |");
            }
        }
        for t in &s.tables {
            let _ = write!(
                md,
                "\n**{}**\n\n| {} |\n|{}\n",
                t.title,
                t.header.join(" | "),
                "---|".repeat(t.header.len())
            );
            for r in &t.rows {
                let _ = writeln!(md, "| {} |", r.join(" | "));
            }
        }
        for c in &s.charts {
            let _ = write!(md, "\n![{c}]({c})\n");
        }
        for p in &s.problems {
            let _ = write!(md, "\n> {p}\n");
        }
    }
    md
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn to_html(title: &str, sections: &[Section]) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}img{{max-width:100%;margin:.5em 0}}.problem{{color:#a00}}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    for s in sections {
        let _ = writeln!(h, "<h2>{} ({})</h2>", escape(&s.folder), escape(&s.kind));
        if !s.facts.is_empty() {
            h += "<table>\n";
            for (k, v) in &s.facts {
                let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
            }
            h += "</table>\n";
        }
        for t in &s.tables {
            let _ = writeln!(h, "<h3>{}</h3><table><tr>", escape(&t.title));
            for c in &t.header {
                let _ = write!(h, "<th>{}</th>", escape(c));
            }
            h += "</tr>\n";
            for r in &t.rows {
                h += "<tr>";
                for c in r {
                    let _ = write!(h, "<td>{}</td>", escape(c));
                }
                h += "</tr>\n";
            }
            h += "</table>\n";
        }
        for c in &s.charts {
            let _ = writeln!(
                h,
                "<figure><img src=\"{0}\" alt=\"{0}\"><figcaption>{0}</figcaption></figure>",
                escape(c)
            );
        }
        for p in &s.problems {
            let _ = writeln!(h, "<p class=\"problem\">{}</p>", escape(p));
        }
    }
    h += "</body></html>\n";
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_folder_becomes_a_section_with_its_numbers() {
        let dir = std::env::temp_dir().join(format!("nmflow-report-{}", std::process::id()));
        let model = dir.join("m");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(
            model.join("config.json"),
            r#"{"method":"cfm","field":{"kind":"set","hidden":128,"depth":3},"steps":10,"solver":"euler","solver_steps":4,"seed":0,"zoo":"z"}"#,
        )
        .unwrap();
        std::fs::write(model.join("eval.json"), r#"{"trained_train":{"acc_mean":0.9,"acc_min":0.8,"acc_max":0.95},"trained_heldout":{"acc_mean":0.91,"acc_min":0.85,"acc_max":0.96},"generated":[{"solver":"euler","steps":4,"nfe":4,"acc_mean":0.9123,"acc_min":0.8,"acc_max":0.93,"ms_per_classifier":0.5}],"novelty":{"steps":4,"nn_dist_median_generated":12.0,"nn_dist_median_heldout":10.0},"downstream":null}"#).unwrap();
        std::fs::write(model.join("loss.png"), b"png").unwrap();
        std::fs::write(dir.join("notes.json"), b"{").unwrap();
        let r = write_report(&dir).unwrap();
        let md = std::fs::read_to_string(&r.markdown).unwrap();
        assert!(md.contains("## m (model)"), "{md}");
        assert!(md.contains("91.23 %"), "{md}");
        assert!(md.contains("![m/loss.png](m/loss.png)"), "{md}");
        // No train.json: the page says training did not finish.
        assert!(md.contains("train.json missing"), "{md}");
        let html = std::fs::read_to_string(&r.html).unwrap();
        assert!(html.contains("<img src=\"m/loss.png\""), "{html}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
