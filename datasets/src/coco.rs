//! COCO instances JSON (`annotations/instances_{train,val}2017.json` + `{train,val}2017/`).
//!
//! The file is parsed into hotcoco's types ([`hotcoco::types::Dataset`]) and indexed with
//! [`hotcoco::COCO`], so the evaluator and the training pipeline read the same objects. Masks
//! come from hotcoco's RLE codec ([`hotcoco::mask`]): polygons (several parts are a union),
//! uncompressed and compressed RLE, boxes.
//!
//! Opening validates the whole file first and fails with a typed error naming the file and
//! the annotation: an image file that does not exist, a polygon part with fewer than 3 points,
//! RLE counts that do not sum to `h·w`, an RLE whose size is not its image's, unknown or
//! duplicate ids. Category ids are kept as in the file; [`CocoDataset::label_of`] maps them to
//! contiguous training labels `0..K` in ascending id order (mmdet's `cat2label`).
//!
//! Masks in this crate are row-major; hotcoco's RLE is column-major (Fortran order, as in
//! pycocotools). [`rle_to_mask`] and [`mask_to_rle`] convert.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use hotcoco::COCO;
use hotcoco::types::{Annotation, Dataset, Image, Rle, Segmentation};
use image::RgbImage;

use crate::error::{DatasetError, Result};
use crate::io::{LabelMap, load_rgb};
pub use crate::transforms::det::{
    DetInstance, DetSample, DetTestTransform, DetTrainTransform, DetrCropBranch,
};

/// A binary mask (values 0/1), row-major.
pub type Mask = LabelMap;

/// The two COCO 2017 splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CocoSplit {
    /// `train2017`.
    Train2017,
    /// `val2017`.
    Val2017,
}

impl CocoSplit {
    /// The folder name (`train2017` / `val2017`).
    pub fn name(self) -> &'static str {
        match self {
            CocoSplit::Train2017 => "train2017",
            CocoSplit::Val2017 => "val2017",
        }
    }

    /// The annotation file name (`instances_train2017.json` / `instances_val2017.json`).
    pub fn annotation_file(self) -> String {
        format!("instances_{}.json", self.name())
    }
}

/// How strict [`CocoDataset::open_with`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CocoReadOptions {
    /// Drop polygon parts with fewer than 3 points (and annotations left with none) with a
    /// warning, as detectron2 does, instead of failing. Default `false`.
    pub drop_invalid_polygons: bool,
    /// Check that every image file exists. Default `true`.
    pub check_image_files: bool,
}

impl Default for CocoReadOptions {
    fn default() -> Self {
        CocoReadOptions {
            drop_invalid_polygons: false,
            check_image_files: true,
        }
    }
}

/// One object of a loaded image.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoInstance {
    /// Annotation id.
    pub ann_id: u64,
    /// Category id as in the file.
    pub category_id: u64,
    /// Contiguous label `0..K`.
    pub label: usize,
    /// `[x, y, w, h]` (from the file, or from the mask when the file has none).
    pub bbox: [f64; 4],
    /// Area (from the file, or the mask area).
    pub area: f64,
    /// The `iscrowd` flag.
    pub iscrowd: bool,
    /// The object's mask at image size.
    pub mask: Mask,
}

/// A decoded image with its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoRecord {
    /// Image id.
    pub image_id: u64,
    /// Image file.
    pub file: PathBuf,
    /// Pixels.
    pub image: RgbImage,
    /// Objects, in file order.
    pub instances: Vec<CocoInstance>,
}

/// A validated COCO instances file with its image folder.
pub struct CocoDataset {
    /// The annotation JSON.
    pub annotation_file: PathBuf,
    /// The folder `file_name`s are relative to.
    pub image_dir: PathBuf,
    /// hotcoco's indexed dataset (images and annotations in file order).
    pub coco: COCO,
    /// Category id of each contiguous label (ascending ids).
    pub cat_ids: Vec<u64>,
    cat_index: HashMap<u64, usize>,
    anns_by_image: Vec<Vec<usize>>,
}

impl std::fmt::Debug for CocoDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CocoDataset")
            .field("annotation_file", &self.annotation_file)
            .field("image_dir", &self.image_dir)
            .field("images", &self.coco.dataset.images.len())
            .field("annotations", &self.coco.dataset.annotations.len())
            .field("cat_ids", &self.cat_ids)
            .finish()
    }
}

impl CocoDataset {
    /// Opens `root/annotations/instances_<split>.json` with images in `root/<split>/`.
    pub fn open(root: impl AsRef<Path>, split: CocoSplit) -> Result<Self> {
        let root = root.as_ref();
        Self::open_with(
            root.join("annotations").join(split.annotation_file()),
            root.join(split.name()),
            CocoReadOptions::default(),
        )
    }

    /// Opens an annotation file with images in `image_dir`, strict by default.
    pub fn open_files(
        annotation_file: impl AsRef<Path>,
        image_dir: impl AsRef<Path>,
    ) -> Result<Self> {
        Self::open_with(annotation_file, image_dir, CocoReadOptions::default())
    }

    /// Opens and validates with explicit options.
    pub fn open_with(
        annotation_file: impl AsRef<Path>,
        image_dir: impl AsRef<Path>,
        options: CocoReadOptions,
    ) -> Result<Self> {
        let path = annotation_file.as_ref().to_path_buf();
        let image_dir = image_dir.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| DatasetError::io(&path, e))?;
        let mut dataset: Dataset =
            serde_json::from_reader(std::io::BufReader::new(file)).map_err(|source| {
                DatasetError::Json {
                    path: path.clone(),
                    source,
                }
            })?;
        validate(&mut dataset, &path, &image_dir, options)?;

        let mut cat_ids: Vec<u64> = dataset.categories.iter().map(|c| c.id).collect();
        cat_ids.sort_unstable();
        let cat_index = cat_ids.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let img_pos: HashMap<u64, usize> = dataset
            .images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.id, i))
            .collect();
        let mut anns_by_image = vec![Vec::new(); dataset.images.len()];
        for (k, a) in dataset.annotations.iter().enumerate() {
            anns_by_image[img_pos[&a.image_id]].push(k);
        }
        Ok(CocoDataset {
            annotation_file: path,
            image_dir,
            coco: COCO::from_dataset(dataset),
            cat_ids,
            cat_index,
            anns_by_image,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.coco.dataset.images.len()
    }

    /// Whether the file lists no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of categories (= contiguous labels).
    pub fn num_classes(&self) -> usize {
        self.cat_ids.len()
    }

    /// Category names in label order.
    pub fn class_names(&self) -> Vec<String> {
        self.cat_ids
            .iter()
            .map(|&id| self.coco.cat_name(id))
            .collect()
    }

    /// The contiguous label of a category id.
    pub fn label_of(&self, category_id: u64) -> Option<usize> {
        self.cat_index.get(&category_id).copied()
    }

    /// The category id of a contiguous label.
    pub fn category_of(&self, label: usize) -> Option<u64> {
        self.cat_ids.get(label).copied()
    }

    /// Image record `index` (file order).
    pub fn image(&self, index: usize) -> &Image {
        &self.coco.dataset.images[index]
    }

    /// The annotations of image `index`, in file order.
    pub fn annotations(&self, index: usize) -> Vec<&Annotation> {
        self.anns_by_image[index]
            .iter()
            .map(|&k| &self.coco.dataset.annotations[k])
            .collect()
    }

    /// The path of image `index`.
    pub fn image_path(&self, index: usize) -> PathBuf {
        self.image_dir.join(&self.image(index).file_name)
    }

    /// Decodes image `index` and checks its size against the file.
    pub fn load_image(&self, index: usize) -> Result<RgbImage> {
        let rec = self.image(index);
        let path = self.image_path(index);
        let img = load_rgb(&path)?;
        if img.dimensions() != (rec.width, rec.height) {
            return Err(DatasetError::ImageSize {
                path,
                width: rec.width,
                height: rec.height,
                found_width: img.width(),
                found_height: img.height(),
            });
        }
        Ok(img)
    }

    /// The mask of an annotation at its image's size (polygons rasterised as pycocotools does).
    pub fn mask(&self, ann: &Annotation) -> Result<Mask> {
        let img = self.coco.get_img(ann.image_id).ok_or_else(|| {
            self.invalid(format!(
                "annotation {} refers to image id {}, which is not in the file",
                ann.id, ann.image_id
            ))
        })?;
        let rle = annotation_rle(ann, img.height, img.width)
            .map_err(|e| self.invalid(format!("annotation {}: {e}", ann.id)))?;
        Ok(rle_to_mask(&rle))
    }

    /// Decodes image `index` with all its objects.
    pub fn load(&self, index: usize) -> Result<CocoRecord> {
        let image = self.load_image(index)?;
        let mut instances = Vec::new();
        for ann in self.annotations(index) {
            let mask = self.mask(ann)?;
            let (bbox, area) = match (ann.bbox, ann.area) {
                (Some(b), Some(a)) => (b, a),
                (b, a) => {
                    let rle = mask_to_rle(&mask);
                    (
                        b.unwrap_or_else(|| hotcoco::mask::to_bbox(&rle)),
                        a.unwrap_or_else(|| hotcoco::mask::area(&rle) as f64),
                    )
                }
            };
            instances.push(CocoInstance {
                ann_id: ann.id,
                category_id: ann.category_id,
                label: self.label_of(ann.category_id).expect("validated category"),
                bbox,
                area,
                iscrowd: ann.iscrowd,
                mask,
            });
        }
        Ok(CocoRecord {
            image_id: self.image(index).id,
            file: self.image_path(index),
            image,
            instances,
        })
    }

    fn invalid(&self, reason: String) -> DatasetError {
        DatasetError::CocoInvalid {
            path: self.annotation_file.clone(),
            reason,
        }
    }
}

/// The RLE of an annotation on an `h × w` canvas (a box when it has no segmentation).
pub fn annotation_rle(ann: &Annotation, h: u32, w: u32) -> hotcoco::error::Result<Rle> {
    match &ann.segmentation {
        Some(seg) => seg.to_rle(h, w),
        None => {
            let bb = ann.bbox.unwrap_or([0.0; 4]);
            hotcoco::mask::fr_bbox(&bb, h, w)
        }
    }
}

/// Decodes a (column-major) RLE into a row-major mask.
pub fn rle_to_mask(rle: &Rle) -> Mask {
    let col = hotcoco::mask::decode(rle);
    let (h, w) = (rle.h as usize, rle.w as usize);
    let mut data = vec![0u8; h * w];
    for x in 0..w {
        for y in 0..h {
            data[y * w + x] = col[x * h + y];
        }
    }
    LabelMap {
        width: rle.w,
        height: rle.h,
        data,
    }
}

/// Encodes a row-major mask (any non-zero value is foreground) as a (column-major) RLE.
pub fn mask_to_rle(mask: &Mask) -> Rle {
    let (h, w) = (mask.height as usize, mask.width as usize);
    let mut col = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            col[x * h + y] = (mask.data[y * w + x] != 0) as u8;
        }
    }
    hotcoco::mask::encode(&col, mask.height, mask.width).expect("mask length is h*w")
}

fn validate(
    dataset: &mut Dataset,
    path: &Path,
    image_dir: &Path,
    options: CocoReadOptions,
) -> Result<()> {
    let invalid = |reason: String| DatasetError::CocoInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut sizes = HashMap::new();
    for img in &dataset.images {
        if sizes.insert(img.id, (img.height, img.width)).is_some() {
            return Err(invalid(format!("duplicate image id {}", img.id)));
        }
        if img.width == 0 || img.height == 0 {
            return Err(invalid(format!(
                "image id {} ({}) has size {}x{}",
                img.id, img.file_name, img.width, img.height
            )));
        }
        if options.check_image_files {
            let file = image_dir.join(&img.file_name);
            if img.file_name.is_empty() || !file.is_file() {
                return Err(DatasetError::CocoMissingImage {
                    path: path.to_path_buf(),
                    image_id: img.id,
                    file,
                });
            }
        }
    }
    let mut cats = HashSet::new();
    for c in &dataset.categories {
        if !cats.insert(c.id) {
            return Err(invalid(format!("duplicate category id {}", c.id)));
        }
    }
    let mut ann_ids = HashSet::new();
    let mut keep = vec![true; dataset.annotations.len()];
    for (k, ann) in dataset.annotations.iter_mut().enumerate() {
        if !ann_ids.insert(ann.id) {
            return Err(invalid(format!("duplicate annotation id {}", ann.id)));
        }
        let &(h, w) = sizes.get(&ann.image_id).ok_or_else(|| {
            invalid(format!(
                "annotation {} refers to image id {}, which is not in the file",
                ann.id, ann.image_id
            ))
        })?;
        if !cats.contains(&ann.category_id) {
            return Err(invalid(format!(
                "annotation {} has category id {}, which is not in the file's categories",
                ann.id, ann.category_id
            )));
        }
        if let Some(bb) = ann.bbox
            && (bb.iter().any(|v| !v.is_finite()) || bb[2] < 0.0 || bb[3] < 0.0)
        {
            return Err(invalid(format!(
                "annotation {} has an invalid bbox {bb:?}",
                ann.id
            )));
        }
        if let Some(a) = ann.area
            && !(a.is_finite() && a >= 0.0)
        {
            return Err(invalid(format!(
                "annotation {} has an invalid area {a}",
                ann.id
            )));
        }
        match &mut ann.segmentation {
            None | Some(Segmentation::Rect(_)) => {}
            Some(Segmentation::Polygon(parts)) => {
                let mut bad = None;
                for (i, p) in parts.iter().enumerate() {
                    if p.len() < 6 || p.len() % 2 != 0 {
                        bad = Some((i, p.len()));
                        break;
                    }
                    if p.iter().any(|v| !v.is_finite()) {
                        return Err(invalid(format!(
                            "annotation {}: polygon part {i} has a non-finite coordinate",
                            ann.id
                        )));
                    }
                }
                if let Some((part, coords)) = bad {
                    if !options.drop_invalid_polygons {
                        return Err(DatasetError::CocoPolygon {
                            path: path.to_path_buf(),
                            ann_id: ann.id,
                            part,
                            coords,
                        });
                    }
                    let before = parts.len();
                    parts.retain(|p| p.len() >= 6 && p.len() % 2 == 0);
                    tracing::warn!(
                        file = %path.display(),
                        ann_id = ann.id,
                        dropped = before - parts.len(),
                        "dropped polygon parts with fewer than 3 points"
                    );
                    if parts.is_empty() {
                        keep[k] = false;
                    }
                }
            }
            Some(Segmentation::UncompressedRle { size, counts }) => {
                check_rle_size(path, ann.id, *size, h, w)?;
                let sum: u64 = counts.iter().map(|&c| c as u64).sum();
                check_rle_sum(path, ann.id, sum, h, w)?;
            }
            Some(Segmentation::CompressedRle { size, counts }) => {
                check_rle_size(path, ann.id, *size, h, w)?;
                let sum = match hotcoco::mask::rle_from_string(counts, h, w) {
                    Ok(rle) => rle.counts.iter().map(|&c| c as u64).sum(),
                    // Decode on an unbounded canvas to tell an overrun from a malformed string.
                    Err(e) => match hotcoco::mask::rle_from_string(counts, u32::MAX, u32::MAX) {
                        Ok(rle) => rle.counts.iter().map(|&c| c as u64).sum(),
                        Err(_) => return Err(invalid(format!("annotation {}: {e}", ann.id))),
                    },
                };
                check_rle_sum(path, ann.id, sum, h, w)?;
            }
            Some(_) => {
                return Err(invalid(format!(
                    "annotation {} has an unsupported segmentation format",
                    ann.id
                )));
            }
        }
    }
    if keep.iter().any(|&k| !k) {
        let mut it = keep.iter();
        dataset
            .annotations
            .retain(|_| *it.next().expect("same length"));
    }
    Ok(())
}

fn check_rle_size(path: &Path, ann_id: u64, size: [u32; 2], h: u32, w: u32) -> Result<()> {
    if size != [h, w] {
        return Err(DatasetError::CocoInvalid {
            path: path.to_path_buf(),
            reason: format!(
                "annotation {ann_id}: RLE size [{}, {}] is not its image's size [{h}, {w}] ([height, width])",
                size[0], size[1]
            ),
        });
    }
    Ok(())
}

fn check_rle_sum(path: &Path, ann_id: u64, sum: u64, h: u32, w: u32) -> Result<()> {
    let expected = h as u64 * w as u64;
    if sum != expected {
        return Err(DatasetError::CocoRleCounts {
            path: path.to_path_buf(),
            ann_id,
            sum,
            height: h,
            width: w,
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::save_rgb_png;
    use serde_json::json;

    fn write_case(dir: &Path, anns: serde_json::Value) -> PathBuf {
        save_rgb_png(&dir.join("val2017/1.png"), &RgbImage::new(5, 4)).unwrap();
        let doc = json!({
            "images": [{"id": 1, "file_name": "1.png", "width": 5, "height": 4}],
            "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
            "annotations": anns,
        });
        let p = dir.join("annotations/instances_val2017.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
        p
    }

    #[test]
    fn reads_polygons_rles_and_maps_categories() {
        let d = tempfile::tempdir().unwrap();
        // A 4x5 mask with rows 1-2 and cols 1-3 set: counts [5,2,2,2,2,2,5] = "5220003".
        write_case(
            d.path(),
            json!([
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, 2], "area": 6,
                 "segmentation": {"size": [4, 5], "counts": "5220003"}, "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 3, 2], "area": 6,
                 "segmentation": {"size": [4, 5], "counts": [5, 2, 2, 2, 2, 2, 5]}, "iscrowd": 1},
                {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 0,
                 "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1], [3, 2, 5, 2, 5, 4, 3, 4]]}
            ]),
        );
        let ds = CocoDataset::open(d.path(), CocoSplit::Val2017).unwrap();
        assert_eq!(ds.cat_ids, vec![3, 7]);
        assert_eq!(ds.label_of(7), Some(1));
        assert_eq!(ds.class_names(), vec!["three", "seven"]);
        let rec = ds.load(0).unwrap();
        assert_eq!(rec.instances.len(), 3);
        let m = &rec.instances[0].mask;
        let expect: Vec<u8> = (0..20)
            .map(|i| ((1..3).contains(&(i / 5)) && (1..4).contains(&(i % 5))) as u8)
            .collect();
        assert_eq!(m.data, expect);
        assert_eq!(rec.instances[1].mask, *m);
        assert!(rec.instances[1].iscrowd);
        // Two unit squares: 1 px + 2x2 px, bbox derived from the mask.
        let third = &rec.instances[2];
        assert_eq!(third.area, 5.0);
        assert_eq!(third.bbox, [0.0, 0.0, 5.0, 4.0]);
        assert_eq!(mask_to_rle(m).counts, vec![5, 2, 2, 2, 2, 2, 5]);
    }

    #[test]
    fn drop_invalid_polygons_option() {
        let d = tempfile::tempdir().unwrap();
        let p = write_case(
            d.path(),
            json!([
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1],
                 "segmentation": [[0, 0, 1, 1]], "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1],
                 "segmentation": [[0, 0, 1, 1], [0, 0, 2, 0, 2, 2]], "iscrowd": 0}
            ]),
        );
        assert!(matches!(
            CocoDataset::open_files(&p, d.path().join("val2017")),
            Err(DatasetError::CocoPolygon { ann_id: 1, .. })
        ));
        let opts = CocoReadOptions {
            drop_invalid_polygons: true,
            ..Default::default()
        };
        let ds = CocoDataset::open_with(&p, d.path().join("val2017"), opts).unwrap();
        assert_eq!(ds.annotations(0).len(), 1);
        assert_eq!(ds.annotations(0)[0].id, 2);
    }
}
