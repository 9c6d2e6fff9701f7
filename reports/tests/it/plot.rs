//! Plots: the data behind the calibration curve (checked by hand), and a PNG that decodes, has
//! the right size and shows text (the embedded font works without system fonts).

use cae_reports::csv;
use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions};
use cae_reports::plot::{
    CurvePlot, CurvePoint, CurveSeries, PLOT_CSV_COLUMNS, PLOT_SIZE, SeriesStyle,
    curves_from_leaderboard, data_path, draw_curves,
};

use crate::common::{close, fixture_runs};

fn calibration() -> CurvePlot {
    let lb = Leaderboard::from_dir(&fixture_runs(), &LeaderboardOptions::default()).unwrap();
    curves_from_leaderboard(&lb, "top1", "Calibration: top1 against pretraining steps")
}

/// RGB pixels of a PNG file, and its size.
fn decode(path: &std::path::Path) -> (Vec<u8>, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (buf, info.width, info.height)
}

#[test]
fn calibration_series_from_the_leaderboard() {
    let plot = calibration();
    let names: Vec<&str> = plot.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cae · finetune · 10% labels",
            "random · finetune · 10% labels",
            "cae · knn",
            "cae · linear (cls, 10 ep, bs 64, lr 0.1, synth-world, vit-tiny)",
            "cae · linear (mean, 10 ep, bs 64, lr 0.1, synth-world, vit-tiny)",
            "random · linear",
        ]
    );
    let styles: Vec<SeriesStyle> = plot.series.iter().map(|s| s.style).collect();
    use SeriesStyle::{Curve, Reference};
    assert_eq!(styles, [Curve, Reference, Curve, Curve, Curve, Reference]);
    let cls = &plot.series[3];
    assert_eq!(cls.points.len(), 2);
    assert_eq!(
        (cls.points[0].x, cls.points[0].n, cls.points[0].std),
        (300.0, 1, None)
    );
    assert!(close(cls.points[0].mean, 0.45));
    assert_eq!((cls.points[1].x, cls.points[1].n), (600.0, 3));
    assert!(close(cls.points[1].mean, 0.52) && close(cls.points[1].std.unwrap(), 0.02));
    let random = &plot.series[5];
    assert_eq!(random.points.len(), 1);
    assert_eq!(random.points[0].x, 0.0);
    assert!(close(random.points[0].mean, 0.32));
    assert!(close(random.points[0].std.unwrap(), 0.0008f64.sqrt()));
    assert_eq!(plot.x_label, "pretraining steps");
    assert_eq!(plot.y_label, "top1 (mean ± std over seeds)");
}

#[test]
fn plot_data_csv_and_png_are_written_side_by_side() {
    let plot = calibration();
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("plots/calibration.png");
    let files = draw_curves(&plot, &png_path).unwrap();
    assert_eq!(files.png, png_path);
    assert_eq!(files.csv, dir.path().join("plots/calibration.csv"));
    assert_eq!(data_path(&png_path), files.csv);

    let text = std::fs::read_to_string(&files.csv).unwrap();
    assert_eq!(text, plot.to_csv());
    let rows = csv::parse(&text).unwrap();
    assert_eq!(rows[0], PLOT_CSV_COLUMNS.map(String::from).to_vec());
    assert_eq!(rows.len(), 1 + 7);
    let line = |i: usize| rows[i].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(
        line(1),
        [
            "cae · finetune · 10% labels",
            "curve",
            "600",
            "0.6",
            "",
            "1"
        ]
    );
    assert_eq!(
        line(2),
        [
            "random · finetune · 10% labels",
            "reference",
            "0",
            "0.35",
            "",
            "1"
        ]
    );
    let cae600 = line(5);
    assert_eq!(
        &cae600[..3],
        [
            "cae · linear (cls, 10 ep, bs 64, lr 0.1, synth-world, vit-tiny)",
            "curve",
            "600"
        ]
    );
    assert!(close(cae600[3].parse().unwrap(), 0.52) && close(cae600[4].parse().unwrap(), 0.02));
    assert_eq!(cae600[5], "3");
    assert_eq!(line(4)[2..], ["300", "0.45", "", "1"]);

    let bytes = std::fs::read(&files.png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (pixels, w, h) = decode(&files.png);
    assert_eq!((w, h), plot.image_size());
    // The legend sits below the chart: one line per series.
    assert_eq!(plot.image_size(), (PLOT_SIZE.0, PLOT_SIZE.1 + 16 + 24 * 6));
    assert!(pixels.iter().any(|&p| p != 255), "blank image");
    // The first series' colour (Okabe–Ito blue) is drawn.
    assert!(pixels.chunks(3).any(|px| px == [0, 114, 178]));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn text_is_drawn_with_the_embedded_font() {
    let series = vec![CurveSeries {
        name: "cae · linear".into(),
        style: SeriesStyle::Curve,
        points: vec![
            CurvePoint {
                x: 0.0,
                mean: 0.1,
                std: None,
                n: 1,
            },
            CurvePoint {
                x: 100.0,
                mean: 0.3,
                std: Some(0.05),
                n: 3,
            },
        ],
    }];
    let plot = |title: &str| CurvePlot {
        title: title.into(),
        x_label: "pretraining steps".into(),
        y_label: "top1".into(),
        series: series.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    draw_curves(&plot(""), &a).unwrap();
    draw_curves(&plot("A caption with glyphs"), &b).unwrap();
    let (pa, w, _) = decode(&a);
    let (pb, _, _) = decode(&b);
    // The caption band (top 40 rows) differs only if the title's glyphs were rasterised.
    let band = (w * 3 * 40) as usize;
    let dark = |p: &[u8]| {
        p[..band]
            .chunks(3)
            .filter(|px| px.iter().all(|&c| c < 128))
            .count()
    };
    assert!(
        dark(&pb) > dark(&pa) + 50,
        "no title text drawn: {} vs {}",
        dark(&pb),
        dark(&pa)
    );
    // Same input, same bytes.
    let again = dir.path().join("b2.png");
    draw_curves(&plot("A caption with glyphs"), &again).unwrap();
    assert_eq!(std::fs::read(&b).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn an_empty_plot_still_draws() {
    let plot = CurvePlot {
        title: "nothing yet".into(),
        x_label: "pretraining steps".into(),
        y_label: "top1".into(),
        series: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let files = draw_curves(&plot, &dir.path().join("empty.png")).unwrap();
    assert_eq!(
        std::fs::read_to_string(files.csv).unwrap(),
        "series,style,x,mean,std,n\n"
    );
    let (_, w, h) = decode(&files.png);
    assert_eq!((w, h), PLOT_SIZE);
}

#[test]
fn curve_png_writes_the_png_and_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("curve.png");
    let series = [
        CurveSeries {
            name: "CAE · linear".into(),
            style: SeriesStyle::Curve,
            points: vec![
                CurvePoint {
                    x: 300.0,
                    mean: 0.45,
                    std: None,
                    n: 1,
                },
                CurvePoint {
                    x: 600.0,
                    mean: 0.52,
                    std: Some(0.02),
                    n: 3,
                },
            ],
        },
        CurveSeries {
            name: "random init · linear".into(),
            style: SeriesStyle::Reference,
            points: vec![CurvePoint {
                x: 0.0,
                mean: 0.32,
                std: Some(0.03),
                n: 2,
            }],
        },
    ];
    let files =
        cae_reports::plot::curve_png(&png, "top1 against steps", "steps", "top1", &series).unwrap();
    assert_eq!(files.png, png);
    assert_eq!(files.csv, data_path(&png));
    let (_, w, h) = decode(&png);
    assert!(w == PLOT_SIZE.0 && h >= PLOT_SIZE.1, "{w}x{h}");
    let rows = csv::parse(&std::fs::read_to_string(&files.csv).unwrap()).unwrap();
    assert_eq!(rows.len(), 1 + 3, "{rows:?}");
}
