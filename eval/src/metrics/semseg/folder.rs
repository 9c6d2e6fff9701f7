//! Evaluating a folder of predicted label maps against a folder of ground-truth label maps.
//!
//! Pairs are matched by file name. The file lists are checked first (every ground truth has a
//! prediction, the prediction folder has nothing else), then the pairs are read, decoded and
//! counted in parallel: each thread owns its buffers, a joint histogram and a partial
//! [`SegConfusion`], claims the next pair from a shared counter, and the partials are merged at
//! the end. If several files are bad, the error reported is the first one in name order,
//! whatever the thread timing.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::png::Decoder;
use super::{JointHist, LabelEncoding, MapKind, SegConfusion, SegMetrics, SemsegError, ValueMap};

/// How the two folders are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderEvalConfig {
    /// The number of classes `C`.
    pub num_classes: usize,
    /// How values are stored in both folders' PNGs.
    pub encoding: LabelEncoding,
    /// The ignore index (255 in mmseg).
    pub ignore_index: u8,
}

impl Default for FolderEvalConfig {
    /// ADE20K: 150 classes, raw encoding with `reduce_zero_label`, ignore index 255.
    fn default() -> Self {
        Self {
            num_classes: 150,
            encoding: LabelEncoding::ReduceZeroLabel,
            ignore_index: 255,
        }
    }
}

/// The result of [`evaluate_folders`].
#[derive(Clone, Debug)]
pub struct FolderEval {
    /// mmseg's numbers over the whole folder.
    pub metrics: SegMetrics,
    /// The accumulated confusion matrix they come from.
    pub confusion: SegConfusion,
    /// How many label maps were evaluated.
    pub num_images: usize,
    /// How many pixels (ignored ones included) were read from each folder.
    pub num_pixels: u64,
}

/// Evaluates every `*.png` in `gt_dir` against the file of the same name in `pred_dir`.
pub fn evaluate_folders(
    gt_dir: &Path,
    pred_dir: &Path,
    config: &FolderEvalConfig,
) -> Result<FolderEval, SemsegError> {
    let empty = SegConfusion::new(config.num_classes, config.ignore_index)?;
    let gt_names: Vec<OsString> = list_files(gt_dir)?
        .into_iter()
        .filter(|n| {
            Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        })
        .collect();
    if gt_names.is_empty() {
        return Err(SemsegError::NoLabelMaps {
            dir: gt_dir.to_owned(),
        });
    }
    let pred_names: BTreeSet<OsString> = list_files(pred_dir)?.into_iter().collect();
    let gt_set: BTreeSet<&OsString> = gt_names.iter().collect();
    let shown = |names: Vec<&OsString>| -> (Vec<String>, usize) {
        let total = names.len();
        let listed = names
            .into_iter()
            .take(10)
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        (listed, total)
    };
    let missing: Vec<&OsString> = gt_names
        .iter()
        .filter(|n| !pred_names.contains(*n))
        .collect();
    if !missing.is_empty() {
        let (names, total) = shown(missing);
        return Err(SemsegError::MissingPredictions {
            gt_dir: gt_dir.to_owned(),
            pred_dir: pred_dir.to_owned(),
            names,
            total,
        });
    }
    let extra: Vec<&OsString> = pred_names.iter().filter(|n| !gt_set.contains(n)).collect();
    if !extra.is_empty() {
        let (names, total) = shown(extra);
        return Err(SemsegError::ExtraPredictions {
            gt_dir: gt_dir.to_owned(),
            pred_dir: pred_dir.to_owned(),
            names,
            total,
        });
    }

    let map = ValueMap::new(config.encoding, config.num_classes, config.ignore_index);
    let next = AtomicUsize::new(0);
    // The smallest index of a failed pair so far: pairs past it need not be read.
    let first_failure = AtomicUsize::new(usize::MAX);
    let failure: Mutex<Option<(usize, SemsegError)>> = Mutex::new(None);
    let threads = rayon::current_num_threads().min(gt_names.len()).max(1);
    let partials: Vec<(SegConfusion, u64)> = (0..threads)
        .into_par_iter()
        .map(|_| {
            let mut worker = Worker::new(empty.clone());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= gt_names.len() || i > first_failure.load(Ordering::Relaxed) {
                    break;
                }
                let name = &gt_names[i];
                if let Err(err) =
                    worker.process(&gt_dir.join(name), &pred_dir.join(name), &map, config)
                {
                    first_failure.fetch_min(i, Ordering::Relaxed);
                    let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                    if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                        *slot = Some((i, err));
                    }
                    break;
                }
            }
            (worker.confusion, worker.pixels)
        })
        .collect();
    if let Some((_, err)) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    let mut confusion = empty;
    let mut num_pixels = 0;
    for (partial, pixels) in &partials {
        confusion.merge(partial)?;
        num_pixels += pixels;
    }
    Ok(FolderEval {
        metrics: confusion.compute(),
        confusion,
        num_images: gt_names.len(),
        num_pixels,
    })
}

/// The names of the regular files (symlinks followed) in `dir`, sorted.
fn list_files(dir: &Path) -> Result<Vec<OsString>, SemsegError> {
    let io = |source| SemsegError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|source| SemsegError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_file() {
            names.push(entry.file_name());
        }
    }
    names.sort();
    Ok(names)
}

/// One thread's buffers and partial counts.
struct Worker {
    gt_bytes: Vec<u8>,
    pred_bytes: Vec<u8>,
    gt: Vec<u8>,
    pred: Vec<u8>,
    decoder: Decoder,
    hist: JointHist,
    confusion: SegConfusion,
    pixels: u64,
}

impl Worker {
    fn new(confusion: SegConfusion) -> Self {
        Self {
            gt_bytes: Vec::new(),
            pred_bytes: Vec::new(),
            gt: Vec::new(),
            pred: Vec::new(),
            decoder: Decoder::default(),
            hist: JointHist::new(),
            confusion,
            pixels: 0,
        }
    }

    fn process(
        &mut self,
        gt_path: &Path,
        pred_path: &Path,
        map: &ValueMap,
        config: &FolderEvalConfig,
    ) -> Result<(), SemsegError> {
        let allowed = || {
            config
                .encoding
                .allowed(config.num_classes, config.ignore_index)
        };
        read_into(gt_path, &mut self.gt_bytes)?;
        read_into(pred_path, &mut self.pred_bytes)?;
        let g = self.decoder.decode(
            gt_path,
            &self.gt_bytes,
            MapKind::Label,
            allowed,
            &mut self.gt,
        )?;
        let p = self.decoder.decode(
            pred_path,
            &self.pred_bytes,
            MapKind::Prediction,
            allowed,
            &mut self.pred,
        )?;
        if (g.width, g.height) != (p.width, p.height) {
            return Err(SemsegError::SizeMismatch {
                gt: gt_path.to_owned(),
                pred: pred_path.to_owned(),
                gt_size: (g.width, g.height),
                pred_size: (p.width, p.height),
            });
        }
        let width = g.width as usize;
        for (i, (pc, lc)) in self
            .pred
            .chunks(super::MAX_PIXELS_PER_FOLD)
            .zip(self.gt.chunks(super::MAX_PIXELS_PER_FOLD))
            .enumerate()
        {
            self.hist.count(pc, lc);
            if let Err(err) = self.confusion.absorb(&mut self.hist, map, config.encoding) {
                return Err(locate(
                    err,
                    gt_path,
                    pred_path,
                    &self.gt,
                    &self.pred,
                    width,
                    i * super::MAX_PIXELS_PER_FOLD,
                ));
            }
        }
        self.pixels += self.gt.len() as u64;
        Ok(())
    }
}

/// Adds the file and the first pixel with the offending value to a value error.
fn locate(
    err: SemsegError,
    gt_path: &Path,
    pred_path: &Path,
    gt: &[u8],
    pred: &[u8],
    width: usize,
    offset: usize,
) -> SemsegError {
    match err {
        SemsegError::InvalidValue {
            which,
            value,
            count,
            allowed,
            ..
        } => {
            let (path, values) = match which {
                MapKind::Label => (gt_path, gt),
                MapKind::Prediction => (pred_path, pred),
            };
            let first_at = values[offset..]
                .iter()
                .position(|&v| i64::from(v) == value)
                .map(|i| ((offset + i) % width.max(1), (offset + i) / width.max(1)));
            SemsegError::InvalidValue {
                file: Some(path.to_owned()),
                which,
                value,
                count,
                first_at,
                allowed,
            }
        }
        other => other,
    }
}

fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<(), SemsegError> {
    let io = |source| SemsegError::Io {
        path: path.to_owned(),
        source,
    };
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write_png(path: &Path, width: u32, data: &[u8]) {
        let height = data.len() as u32 / width;
        let file = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(data).unwrap();
    }

    struct Case {
        _dir: tempfile::TempDir,
        gt: PathBuf,
        pred: PathBuf,
    }

    fn case(files: &[(&str, u32, &[u8], &[u8])]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let gt = dir.path().join("gt");
        let pred = dir.path().join("pred");
        std::fs::create_dir_all(&gt).unwrap();
        std::fs::create_dir_all(&pred).unwrap();
        for (name, w, g, p) in files {
            write_png(&gt.join(name), *w, g);
            write_png(&pred.join(name), *w, p);
        }
        Case {
            _dir: dir,
            gt,
            pred,
        }
    }

    fn config(num_classes: usize) -> FolderEvalConfig {
        FolderEvalConfig {
            num_classes,
            ..FolderEvalConfig::default()
        }
    }

    #[test]
    fn folders_give_the_streamed_numbers() {
        let files: Vec<(String, Vec<u8>, Vec<u8>)> = (0..9u8)
            .map(|i| {
                let g: Vec<u8> = (0..12u8).map(|j| (i + j) % 4).collect();
                let p: Vec<u8> = (0..12u8).map(|j| 1 + (i * j) % 3).collect();
                (format!("{i}.png"), g, p)
            })
            .collect();
        let spec: Vec<(&str, u32, &[u8], &[u8])> = files
            .iter()
            .map(|(n, g, p)| (n.as_str(), 4, g.as_slice(), p.as_slice()))
            .collect();
        let c = case(&spec);
        let out = evaluate_folders(&c.gt, &c.pred, &config(3)).unwrap();
        let mut streamed = SegConfusion::new(3, 255).unwrap();
        for (_, g, p) in &files {
            streamed
                .update_encoded(p, g, LabelEncoding::ReduceZeroLabel)
                .unwrap();
        }
        assert_eq!(out.confusion, streamed);
        assert_eq!(out.num_images, 9);
        assert_eq!(out.num_pixels, 9 * 12);
        assert_eq!(
            out.metrics.m_iou.to_bits(),
            streamed.compute().m_iou.to_bits()
        );
    }

    #[test]
    fn missing_and_extra_predictions_are_listed() {
        let c = case(&[
            ("a.png", 2, &[1, 2], &[1, 2]),
            ("b.png", 2, &[1, 2], &[1, 2]),
        ]);
        std::fs::remove_file(c.pred.join("b.png")).unwrap();
        match evaluate_folders(&c.gt, &c.pred, &config(3)) {
            Err(e @ SemsegError::MissingPredictions { .. }) => {
                assert!(e.to_string().contains("b.png"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        write_png(&c.pred.join("b.png"), 2, &[1, 2]);
        std::fs::write(c.pred.join("notes.txt"), "x").unwrap();
        match evaluate_folders(&c.gt, &c.pred, &config(3)) {
            Err(e @ SemsegError::ExtraPredictions { .. }) => {
                assert!(e.to_string().contains("notes.txt"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_first_bad_file_in_name_order_is_reported() {
        // c.png and e.png both hold a label value above the class count.
        let good: &[u8] = &[1, 2, 0, 255];
        let bad: &[u8] = &[1, 9, 9, 2];
        let c = case(&[
            ("a.png", 2, good, good),
            ("b.png", 2, good, good),
            ("c.png", 2, bad, good),
            ("d.png", 2, good, good),
            ("e.png", 2, bad, good),
        ]);
        for _ in 0..5 {
            match evaluate_folders(&c.gt, &c.pred, &config(3)) {
                Err(SemsegError::InvalidValue {
                    file: Some(file),
                    which: MapKind::Label,
                    value: 9,
                    count: 2,
                    first_at: Some((1, 0)),
                    ..
                }) => assert!(file.ends_with("gt/c.png")),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sizes_must_match() {
        let c = case(&[("a.png", 2, &[1, 2, 3, 1], &[1, 2, 3, 1])]);
        write_png(&c.pred.join("a.png"), 4, &[1, 2, 3, 1]);
        match evaluate_folders(&c.gt, &c.pred, &config(3)) {
            Err(e @ SemsegError::SizeMismatch { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("4x1") && msg.contains("2x2"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let c = case(&[]);
        assert!(matches!(
            evaluate_folders(&c.gt, &c.pred, &config(3)),
            Err(SemsegError::NoLabelMaps { .. })
        ));
        assert!(matches!(
            evaluate_folders(&c.gt.join("nope"), &c.pred, &config(3)),
            Err(SemsegError::Io { .. })
        ));
    }
}
