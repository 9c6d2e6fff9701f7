//! Plots: metric against pretraining steps, several series, mean ± std error bars.
//!
//! [`draw_curves`] writes a PNG (plotters' bitmap backend into a buffer, encoded with `png`) and,
//! next to it, the data behind it as CSV ([`CurvePlot::to_csv`]: `series,style,x,mean,std,n`), so
//! tests and readers check numbers, not pixels. [`curves_from_leaderboard`] turns a
//! [`Leaderboard`] into the calibration plot: probe / kNN / low-label fine-tune accuracy against
//! pretraining steps, one series per (method, protocol, label fraction, …), a random-init encoder
//! drawn as a dashed reference line.
//!
//! **Text without system fonts.** plotters' default `ttf` feature finds fonts through font-kit and
//! fontconfig, which a fresh machine may lack (and which needs `libfontconfig` to build). This
//! crate uses the `ab_glyph` feature instead and registers DejaVu Sans, embedded by the `dejavu`
//! crate, as `sans-serif` before drawing: the same text on every machine, nothing looked up at
//! run time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::error::ReportError;
use crate::leaderboard::{GroupKey, Leaderboard, percent};
use crate::record::write_atomic;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesStyle {
    /// Line through the points, markers and error bars.
    Curve,
    /// A dashed horizontal line at its (first) point's mean across the whole x range, plus the
    /// point with its error bar (e.g. a random-init encoder).
    Reference,
    /// A dashed vertical line at its (first) point's x across the whole y range, without a
    /// point (e.g. the paper's default value of an ablated parameter).
    Marker,
}

impl SeriesStyle {
    fn as_str(self) -> &'static str {
        match self {
            Self::Curve => "curve",
            Self::Reference => "reference",
            Self::Marker => "marker",
        }
    }
}

/// One point: mean ± std over n seeds at x.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Pretraining steps (or any x).
    pub x: f64,
    /// Mean over seeds.
    pub mean: f64,
    /// Sample std over seeds (`None` for one seed: no error bar).
    pub std: Option<f64>,
    /// Seeds.
    pub n: usize,
}

/// A named series of points.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSeries {
    /// Legend text.
    pub name: String,
    /// How it is drawn.
    pub style: SeriesStyle,
    /// Points (drawn in x order).
    pub points: Vec<CurvePoint>,
}

/// A plot of several series.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePlot {
    /// Caption.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The series, in legend order.
    pub series: Vec<CurveSeries>,
}

/// What [`draw_curves`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotFiles {
    /// The image.
    pub png: PathBuf,
    /// The data behind it.
    pub csv: PathBuf,
}

/// The CSV columns of [`CurvePlot::to_csv`].
pub const PLOT_CSV_COLUMNS: [&str; 6] = ["series", "style", "x", "mean", "std", "n"];

impl CurvePlot {
    /// The data behind the plot: one line per point, series in legend order, points by x.
    /// Numbers at full precision; `std` empty for a single seed.
    pub fn to_csv(&self) -> String {
        let mut out = crate::csv::row(&PLOT_CSV_COLUMNS);
        for s in &self.series {
            for p in sorted_points(s) {
                out.push_str(&crate::csv::row(&[
                    s.name.clone(),
                    s.style.as_str().to_string(),
                    p.x.to_string(),
                    p.mean.to_string(),
                    p.std.map(|v| v.to_string()).unwrap_or_default(),
                    p.n.to_string(),
                ]));
            }
        }
        out
    }

    /// (x range, y range) covering every point and error bar, padded; never empty.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in self
            .series
            .iter()
            .filter(|s| s.style == SeriesStyle::Marker)
            .flat_map(|s| s.points.iter())
        {
            x0 = x0.min(p.x);
            x1 = x1.max(p.x);
        }
        let pts = self
            .series
            .iter()
            .filter(|s| s.style != SeriesStyle::Marker)
            .flat_map(|s| s.points.iter());
        for p in pts {
            let s = p.std.unwrap_or(0.0);
            x0 = x0.min(p.x);
            x1 = x1.max(p.x);
            y0 = y0.min(p.mean - s);
            y1 = y1.max(p.mean + s);
        }
        if x0 > x1 || y0 > y1 {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        let pad = |lo: f64, hi: f64, frac: f64| {
            let span = hi - lo;
            if span > 0.0 {
                (lo - span * frac, hi + span * frac)
            } else {
                let d = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
                (lo - d, hi + d)
            }
        };
        (pad(x0, x1, 0.05), pad(y0, y1, 0.1))
    }
}

fn sorted_points(s: &CurveSeries) -> Vec<CurvePoint> {
    let mut pts = s.points.clone();
    pts.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.mean.total_cmp(&b.mean)));
    pts
}

/// The fixed colour cycle (colour-blind-friendly, Okabe–Ito).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Image width, and height of the chart above the legend, in pixels.
pub const PLOT_SIZE: (u32, u32) = (1000, 600);

/// Height of one legend line (the legend sits below the chart, never over the data).
const LEGEND_LINE: u32 = 24;

impl CurvePlot {
    /// The image size: [`PLOT_SIZE`] plus one legend line per series below the chart.
    pub fn image_size(&self) -> (u32, u32) {
        let legend = if self.series.is_empty() {
            0
        } else {
            16 + LEGEND_LINE * self.series.len() as u32
        };
        (PLOT_SIZE.0, PLOT_SIZE.1 + legend)
    }
}

/// Registers the embedded DejaVu Sans as `sans-serif` (once per process).
fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("the embedded DejaVu Sans font did not load".into())
    }
}

/// The plot as RGB pixels (`width × height × 3`).
fn render_rgb(plot: &CurvePlot) -> Result<Vec<u8>, String> {
    ensure_font()?;
    let (w, h) = plot.image_size();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (upper, legend) = root.split_vertically(PLOT_SIZE.1);
        let ((x0, x1), (y0, y1)) = plot.ranges();
        let mut chart = ChartBuilder::on(&upper)
            .caption(&plot.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(plot.x_label.as_str())
            .y_desc(plot.y_label.as_str())
            .label_style(("sans-serif", 15))
            .x_label_formatter(&|x| axis_number(*x))
            .y_label_formatter(&|y| axis_number(*y))
            .axis_desc_style(("sans-serif", 17))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in plot.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let pts = sorted_points(s);
            let line = ShapeStyle::from(colour).stroke_width(2);
            match s.style {
                SeriesStyle::Curve => {
                    chart
                        .draw_series(LineSeries::new(pts.iter().map(|p| (p.x, p.mean)), line))
                        .map_err(|e| e.to_string())?;
                }
                SeriesStyle::Reference => {
                    let level = pts.first().map_or(0.0, |p| p.mean);
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(x0, level), (x1, level)],
                            8,
                            6,
                            line,
                        ))
                        .map_err(|e| e.to_string())?;
                }
                SeriesStyle::Marker => {
                    let at = pts.first().map_or(0.0, |p| p.x);
                    chart
                        .draw_series(DashedLineSeries::new([(at, y0), (at, y1)], 8, 6, line))
                        .map_err(|e| e.to_string())?;
                }
            }
            if s.style == SeriesStyle::Marker {
                let y = 8 + (LEGEND_LINE * i as u32) as i32 + LEGEND_LINE as i32 / 2;
                legend
                    .draw(&PathElement::new(vec![(110, y - 9), (110, y + 9)], line))
                    .map_err(|e| e.to_string())?;
                legend_name(&legend, &s.name, y)?;
                continue;
            }
            chart
                .draw_series(pts.iter().filter_map(|p| {
                    p.std.map(|sd| {
                        ErrorBar::new_vertical(p.x, p.mean - sd, p.mean, p.mean + sd, line, 10)
                    })
                }))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.x, p.mean), 4, colour.filled())),
                )
                .map_err(|e| e.to_string())?;
            // Legend line i, below the chart: a sample of the line, then the name.
            let y = 8 + (LEGEND_LINE * i as u32) as i32 + LEGEND_LINE as i32 / 2;
            let sample: Vec<(i32, i32)> = vec![(90, y), (130, y)];
            match s.style {
                SeriesStyle::Curve => legend.draw(&PathElement::new(sample, line)),
                SeriesStyle::Reference => legend
                    .draw(&PathElement::new(vec![(90, y), (102, y)], line))
                    .and_then(|_| legend.draw(&PathElement::new(vec![(112, y), (124, y)], line))),
                SeriesStyle::Marker => unreachable!("drawn above"),
            }
            .map_err(|e| e.to_string())?;
            legend
                .draw(&Circle::new((110, y), 4, colour.filled()))
                .map_err(|e| e.to_string())?;
            legend_name(&legend, &s.name, y)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// A series' name in the legend line centred at `y`, after its sample.
fn legend_name(
    legend: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    name: &str,
    y: i32,
) -> Result<(), String> {
    legend
        .draw(&Text::new(
            name.to_string(),
            (142, y - 9),
            ("sans-serif", 16).into_font().color(&BLACK),
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Axis tick text: integers without a fraction, others with up to 4 significant decimals.
fn axis_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// PNG bytes of an RGB buffer.
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgb).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The CSV file written next to a PNG: same name, `.csv`.
pub fn data_path(png: &Path) -> PathBuf {
    png.with_extension("csv")
}

/// The PNG bytes of `plot` (what [`draw_curves`] writes), for callers that embed the image.
pub fn curves_png_bytes(plot: &CurvePlot) -> Result<Vec<u8>, String> {
    encode_png(&render_rgb(plot)?, plot.image_size())
}

/// One bar of [`bars_png_bytes`]: a category's mean with an optional ± spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Category (x axis).
    pub label: String,
    /// Height.
    pub value: f64,
    /// ± spread drawn as an error bar (`None`: none).
    pub spread: Option<f64>,
}

/// A bar chart (one colour; `NaN` values are left out and their category labelled `n/a`) as
/// PNG bytes, e.g. the per-class IoU of a segmentation run.
pub fn bars_png_bytes(title: &str, y_label: &str, bars: &[Bar]) -> Result<Vec<u8>, String> {
    ensure_font()?;
    let (w, h) = PLOT_SIZE;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let top = bars
            .iter()
            .filter(|b| b.value.is_finite())
            .map(|b| b.value + b.spread.unwrap_or(0.0))
            .fold(0.0f64, f64::max);
        let top = if top > 0.0 { top * 1.1 } else { 1.0 };
        let n = bars.len().max(1);
        let labels: Vec<String> = bars
            .iter()
            .map(|b| {
                if b.value.is_finite() {
                    b.label.clone()
                } else {
                    format!("{} (n/a)", b.label)
                }
            })
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(64)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 || x.fract() == 0.0 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 17))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let colour = COLOURS[0];
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| b.value.is_finite())
                    .map(|(i, b)| {
                        Rectangle::new(
                            [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, b.value)],
                            colour.filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
        let line = ShapeStyle::from(BLACK).stroke_width(2);
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                let sd = b.spread.filter(|_| b.value.is_finite())?;
                let x = i as f64 + 0.5;
                Some(ErrorBar::new_vertical(
                    x,
                    (b.value - sd).max(0.0),
                    b.value,
                    b.value + sd,
                    line,
                    10,
                ))
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    encode_png(&buf, (w, h))
}

/// Draws `plot` to `png` and writes its data to [`data_path`]`(png)`, both atomically.
pub fn draw_curves(plot: &CurvePlot, png: &Path) -> Result<PlotFiles, ReportError> {
    let err = |message: String| ReportError::Plot {
        path: png.to_path_buf(),
        message,
    };
    let rgb = render_rgb(plot).map_err(err)?;
    let bytes = encode_png(&rgb, plot.image_size()).map_err(err)?;
    let csv = data_path(png);
    write_atomic(&csv, plot.to_csv().as_bytes())?;
    write_atomic(png, &bytes)?;
    Ok(PlotFiles {
        png: png.to_path_buf(),
        csv,
    })
}

/// Draws `series` (mean ± std error bars) against x to `png`, with the data as CSV next to it
/// ([`data_path`]); the one-call form of [`draw_curves`].
///
/// ```no_run
/// use cae_reports::plot::{CurvePoint, CurveSeries, SeriesStyle, curve_png};
/// let cae = CurveSeries {
///     name: "CAE · linear".into(),
///     style: SeriesStyle::Curve,
///     points: vec![CurvePoint { x: 600.0, mean: 0.52, std: Some(0.02), n: 3 }],
/// };
/// curve_png("out/calibration.png".as_ref(), "top1 against steps", "pretraining steps", "top1", &[cae])
///     .unwrap();
/// ```
pub fn curve_png(
    png: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[CurveSeries],
) -> Result<PlotFiles, ReportError> {
    let plot = CurvePlot {
        title: title.to_string(),
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        series: series.to_vec(),
    };
    draw_curves(&plot, png)
}

/// The series key of a leaderboard row: its group key without the encoder (label, file) and steps.
fn series_key(k: &GroupKey) -> GroupKey {
    GroupKey {
        encoder: String::new(),
        encoder_id: String::new(),
        pretrain_steps: None,
        ..k.clone()
    }
}

fn base_name(k: &GroupKey) -> String {
    let mut name = format!("{} · {}", k.method, k.protocol);
    if let Some(f) = k.label_fraction.filter(|f| *f < 1.0) {
        let _ = write!(name, " · {} labels", percent(f));
    }
    name
}

fn detail_name(k: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &k.pooling {
        parts.push(p.clone());
    }
    if let Some(l) = k.layer {
        parts.push(format!("block {l}"));
    }
    if let Some(e) = k.epochs {
        parts.push(format!("{e} ep"));
    }
    if let Some(b) = k.effective_batch {
        parts.push(format!("bs {b}"));
    }
    if let Some(lr) = k.lr {
        parts.push(format!("lr {lr}"));
    }
    if let Some(d) = k.dataset_name() {
        parts.push(d);
    }
    parts.push(k.arch.clone());
    parts.join(", ")
}

/// The calibration plot: `metric` against pretraining steps, one series per configuration
/// without the encoder (method, protocol, label fraction, pooling, layer, …), mean ± std over
/// seeds at each step count. An encoder without pretraining steps (or with method `random`) is
/// at x = 0 and drawn as a dashed reference line. Series are named `method · protocol [· p%
/// labels]`, with the remaining details appended where two series would otherwise share a name.
pub fn curves_from_leaderboard(lb: &Leaderboard, metric: &str, title: &str) -> CurvePlot {
    let mut keyed: Vec<(GroupKey, CurveSeries)> = Vec::new();
    for row in lb.rows.iter().filter(|r| r.metric == metric) {
        let key = series_key(&row.key);
        let point = CurvePoint {
            x: row.key.pretrain_steps.unwrap_or(0) as f64,
            mean: row.mean,
            std: row.std,
            n: row.n,
        };
        match keyed.iter_mut().find(|(k, _)| *k == key) {
            Some((_, s)) => s.points.push(point),
            None => {
                let reference = row.key.method == "random" || row.key.pretrain_steps.is_none();
                keyed.push((
                    key.clone(),
                    CurveSeries {
                        name: base_name(&key),
                        style: if reference {
                            SeriesStyle::Reference
                        } else {
                            SeriesStyle::Curve
                        },
                        points: vec![point],
                    },
                ));
            }
        }
    }
    keyed.sort_by(|a, b| a.0.order(&b.0));
    let names: Vec<String> = keyed.iter().map(|(_, s)| s.name.clone()).collect();
    let mut series = Vec::with_capacity(keyed.len());
    for (k, mut s) in keyed {
        if names.iter().filter(|n| **n == s.name).count() > 1 {
            s.name = format!("{} ({})", s.name, detail_name(&k));
        }
        s.points = sorted_points(&s);
        series.push(s);
    }
    CurvePlot {
        title: title.to_string(),
        x_label: "pretraining steps".into(),
        y_label: format!("{metric} (mean ± std over seeds)"),
        series,
    }
}
