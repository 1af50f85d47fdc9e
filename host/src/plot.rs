//! PNG charts for people: line charts (loss curves, accuracy vs NFE, W1 per marginal, fine-tuning
//! curves) and overlaid histograms, drawn with plotters' bitmap backend into memory and written
//! atomically. Text uses the Ubuntu font shipped by `epaint_default_fonts`, so no system font is
//! needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::io::write_atomic;

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 560);
/// The font family name the charts use.
const FONT: &str = "sans-serif";

/// Colours of successive series (colour-blind-safe Okabe–Ito palette).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
];

/// A chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write the chart: {problem}")]
pub struct PlotError {
    /// The PNG file.
    pub path: std::path::PathBuf,
    /// What went wrong.
    pub problem: String,
}

/// One line of a [`LineChart`].
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points `(x, y)`; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at every point.
    pub markers: bool,
}

impl Series {
    /// A series without markers.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            markers: false,
        }
    }

    /// A series with a marker at every point.
    pub fn marked(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            markers: true,
        }
    }
}

/// A line chart.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Horizontal reference lines `(label, y)`, dashed.
    pub references: Vec<(String, f64)>,
    /// Logarithmic x axis (points with x ≤ 0 are skipped).
    pub log_x: bool,
    /// Logarithmic y axis (points with y ≤ 0 are skipped).
    pub log_y: bool,
    /// Legend in the upper right corner (default: lower right).
    pub legend_top: bool,
}

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a valid TTF shipped by the crate; failure would only mean plain boxes.
        let _ = register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

fn png_bytes(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Renders with `draw` into an RGB buffer and writes it as a PNG file (temporary file + rename).
fn render(
    path: &Path,
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<(), PlotError> {
    register_fonts();
    let err = |problem: String| PlotError {
        path: path.into(),
        problem,
    };
    let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        draw(&root).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let bytes = png_bytes(&buf, SIZE).map_err(err)?;
    write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}

/// The range of `values` with a margin, never empty.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-9 * hi.abs().max(1.0));
    (lo - 0.05 * span, hi + 0.05 * span)
}

fn axis_value(v: f64, log: bool) -> Option<f64> {
    match (v.is_finite(), log) {
        (false, _) => None,
        (true, false) => Some(v),
        (true, true) => (v > 0.0).then(|| v.log10()),
    }
}

fn tick_label(v: f64, log: bool) -> String {
    if log {
        let x = 10f64.powf(v);
        if (0.01..10_000.0).contains(&x) {
            // Two significant digits: ticks sit at even steps of log10, not at round values.
            let decimals = (1 - x.log10().floor() as i32).max(0) as usize;
            let text = format!("{x:.decimals$}");
            if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                text
            }
        } else {
            format!("{x:.0e}")
        }
    } else if v.abs() >= 1000.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A chart with the house margins and caption over `x × y`.
fn build<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    x: (f64, f64),
    y: (f64, f64),
) -> Result<Chart<'a, 'b>, String> {
    ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(text)
}

/// Axes, grid and tick labels (`log_*`: the axis holds log10 values).
fn mesh(
    c: &mut Chart<'_, '_>,
    x_label: &str,
    y_label: &str,
    (log_x, log_y): (bool, bool),
) -> Result<(), String> {
    c.configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| tick_label(*v, log_x))
        .y_label_formatter(&|v| tick_label(*v, log_y))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(text)
}

/// The legend box.
fn legend<'a, 'b: 'a>(c: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<(), String> {
    c.configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(position)
        .draw()
        .map_err(text)
}

/// Draws a line chart into `path`.
///
/// # Errors
/// [`PlotError`] when drawing or writing fails.
pub fn line_chart(path: &Path, chart: &LineChart) -> Result<(), PlotError> {
    let series: Vec<(&Series, Vec<(f64, f64)>)> = chart
        .series
        .iter()
        .map(|s| {
            let pts = s
                .points
                .iter()
                .filter_map(|&(x, y)| {
                    Some((axis_value(x, chart.log_x)?, axis_value(y, chart.log_y)?))
                })
                .collect();
            (s, pts)
        })
        .collect();
    let refs: Vec<(&str, f64)> = chart
        .references
        .iter()
        .filter_map(|(l, y)| Some((l.as_str(), axis_value(*y, chart.log_y)?)))
        .collect();
    let xr = padded_range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let yr = padded_range(
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.1))
            .chain(refs.iter().map(|r| r.1)),
    );
    render(path, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut c = build(root, &chart.title, xr, yr)?;
        mesh(
            &mut c,
            &chart.x_label,
            &chart.y_label,
            (chart.log_x, chart.log_y),
        )?;
        for (i, (s, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if s.markers {
                c.draw_series(
                    pts.iter()
                        .map(|&p| Circle::new(p, 3, color.filled()).into_dyn()),
                )
                .map_err(|x| e(&x))?;
            }
        }
        for (i, (label, y)) in refs.iter().enumerate() {
            let color = RGBColor(90, 90, 90);
            let dash = DashedLineSeries::new(
                [(xr.0, *y), (xr.1, *y)],
                6,
                4,
                color.mix(0.8).stroke_width(1 + u32::from(i == 0)),
            );
            c.draw_series(dash)
                .map_err(|x| e(&x))?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
        }
        legend(
            &mut c,
            if chart.legend_top {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            },
        )
    })
}

/// Draws overlaid, semi-transparent histograms of several groups over shared bins into `path`;
/// each group is scaled to a fraction of its own count.
///
/// # Errors
/// [`PlotError`] when drawing or writing fails.
pub fn histogram(
    path: &Path,
    title: &str,
    x_label: &str,
    groups: &[(String, Vec<f64>)],
    bins: usize,
) -> Result<(), PlotError> {
    let bins = bins.max(1);
    let (lo, hi) = padded_range(groups.iter().flat_map(|g| g.1.iter().copied()));
    let width = (hi - lo) / bins as f64;
    let counts: Vec<Vec<f64>> = groups
        .iter()
        .map(|(_, v)| {
            let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            let mut c = vec![0.0; bins];
            for x in &finite {
                let b = (((x - lo) / width) as usize).min(bins - 1);
                c[b] += 1.0 / finite.len() as f64;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().fold(0.0f64, f64::max) * 1.1;
    render(path, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut c = build(root, title, (lo, hi), (0.0, top.max(1e-9)))?;
        mesh(&mut c, x_label, "fraction of the group", (false, false))?;
        for (i, ((label, _), cnt)) in groups.iter().zip(&counts).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            c.draw_series(cnt.iter().enumerate().map(|(b, &f)| {
                let x0 = lo + b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, f)], color.mix(0.45).filled())
            }))
            .map_err(|x| e(&x))?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
        }
        legend(&mut c, SeriesLabelPosition::UpperLeft)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (png::OutputInfo, Vec<u8>) {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn charts_are_valid_pngs_with_drawn_content() {
        let dir = std::env::temp_dir().join(format!("nmflow-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = LineChart {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "MSE".into(),
            series: vec![
                Series::line(
                    "train",
                    (1..100).map(|i| (i as f64, 1.0 / i as f64)).collect(),
                ),
                Series::marked(
                    "held out",
                    vec![(10.0, 0.2), (50.0, 0.05), (90.0, f64::NAN)],
                ),
            ],
            references: vec![("zero field".into(), 1.5)],
            log_x: false,
            log_y: true,
            legend_top: true,
        };
        let p = dir.join("line.png");
        line_chart(&p, &chart).unwrap();
        let (info, px) = decode(&p);
        assert_eq!((info.width, info.height), SIZE);
        // Both the first palette colour (a series) and dark text pixels are present.
        let rgb: Vec<&[u8]> = px.chunks_exact(3).collect();
        assert!(rgb.iter().any(|c| *c == [0, 114, 178]));
        assert!(rgb.iter().filter(|c| c.iter().all(|&v| v < 60)).count() > 500);
        let h = dir.join("hist.png");
        histogram(
            &h,
            "accuracy",
            "test accuracy",
            &[
                ("a".into(), vec![0.5, 0.6, 0.6, 0.7]),
                ("b".into(), vec![0.9; 10]),
            ],
            20,
        )
        .unwrap();
        assert_eq!(decode(&h).0.width, SIZE.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ranges_and_ticks() {
        assert_eq!(padded_range([f64::NAN].into_iter()), (0.0, 1.0));
        let (a, b) = padded_range([1.0, 3.0].into_iter());
        assert!((a - 0.9).abs() < 1e-12 && (b - 3.1).abs() < 1e-12);
        assert_eq!(axis_value(-1.0, true), None);
        assert_eq!(tick_label(2.0, true), "100");
        assert_eq!(tick_label(3.981f64.log10(), true), "4");
        assert_eq!(tick_label(1.585f64.log10(), true), "1.6");
        assert_eq!(tick_label(0.398f64.log10(), true), "0.4");
        assert_eq!(tick_label(12.589f64.log10(), true), "13");
        assert_eq!(tick_label(-5.0, true), "1e-5");
        assert_eq!(tick_label(0.25, false), "0.25");
    }
}
