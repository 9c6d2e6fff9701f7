//! The one error type of this crate.
//!
//! Every variant that comes from a file names that file and says what is wrong with it, so a
//! user can fix the dataset without reading code. Nothing in this crate panics on bad input.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, DatasetError>;

/// What went wrong while reading, transforming or writing a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A required file or folder does not exist.
    #[error("{path}: {what} not found")]
    NotFound {
        /// Where it was expected.
        path: PathBuf,
        /// What was expected there (e.g. "ADE20K images folder").
        what: String,
    },
    /// An image file does not decode (truncated, corrupt, unknown format).
    #[error("{path}: cannot decode image: {reason}")]
    ImageDecode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// An image could not be encoded for writing.
    #[error("{path}: cannot encode image: {reason}")]
    ImageEncode {
        /// The file being written.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
    /// A folder that should hold images holds none.
    #[error("{path}: no images found (expected *.jpg, *.jpeg or *.png files)")]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A class folder of an ImageFolder holds no images.
    #[error("{path}: class folder `{class}` contains no images (*.jpg, *.jpeg, *.png)")]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
        /// The class name (the folder name).
        class: String,
    },
    /// A label map is not an 8-bit single-channel image.
    #[error("{path}: label map must be an 8-bit single-channel (grayscale) PNG, found {found}")]
    LabelFormat {
        /// The label map file.
        path: PathBuf,
        /// What the file holds instead.
        found: String,
    },
    /// A label map and its image have different sizes.
    #[error(
        "{annotation}: label map is {label_width}x{label_height} but its image {image} is \
         {image_width}x{image_height}"
    )]
    SizeMismatch {
        /// The label map file.
        annotation: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Label map width.
        label_width: u32,
        /// Label map height.
        label_height: u32,
        /// Image width.
        image_width: u32,
        /// Image height.
        image_height: u32,
    },
    /// A label value is neither a class (0..=num_classes) nor the ignore value 255.
    #[error(
        "{path}: label value {value} at pixel (x={x}, y={y}) is above the class count \
         {num_classes} and is not the ignore value 255"
    )]
    LabelValue {
        /// The label map file.
        path: PathBuf,
        /// The offending value.
        value: u8,
        /// Column of the first offending pixel.
        x: u32,
        /// Row of the first offending pixel.
        y: u32,
        /// The number of classes the map may use (values 0..=num_classes).
        num_classes: u8,
    },
    /// An image has no matching annotation file (ADE20K).
    #[error("{image}: no annotation file {expected}")]
    MissingAnnotation {
        /// The image file.
        image: PathBuf,
        /// The annotation file that should exist.
        expected: PathBuf,
    },
    /// An annotation file has no matching image (ADE20K).
    #[error(
        "{annotation}: annotation has no image (looked for {stem}.jpg/.jpeg/.png in {image_dir})"
    )]
    OrphanAnnotation {
        /// The annotation file.
        annotation: PathBuf,
        /// Its file stem.
        stem: String,
        /// The image folder searched.
        image_dir: PathBuf,
    },
    /// A file that should be JSON is not (or does not have the expected schema).
    #[error("{path}: not a valid COCO annotation JSON file: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// An image listed in a COCO file is missing from the image folder.
    #[error("{path}: image id {image_id} refers to {file}, which does not exist")]
    CocoMissingImage {
        /// The annotation file.
        path: PathBuf,
        /// The image id.
        image_id: u64,
        /// The missing image file.
        file: PathBuf,
    },
    /// A COCO polygon part has fewer than 3 points (or an odd number of coordinates).
    #[error(
        "{path}: annotation {ann_id}: polygon part {part} has {coords} coordinates; a polygon \
         needs at least 3 points (6 numbers) and an even count"
    )]
    CocoPolygon {
        /// The annotation file.
        path: PathBuf,
        /// The annotation id.
        ann_id: u64,
        /// Index of the polygon part.
        part: usize,
        /// How many numbers it has.
        coords: usize,
    },
    /// The runs of a COCO RLE do not add up to `h·w`.
    #[error(
        "{path}: annotation {ann_id}: RLE counts sum to {sum}, expected h*w = {height}*{width} = {expected}"
    )]
    CocoRleCounts {
        /// The annotation file.
        path: PathBuf,
        /// The annotation id.
        ann_id: u64,
        /// What the counts add up to.
        sum: u64,
        /// RLE height.
        height: u32,
        /// RLE width.
        width: u32,
        /// `height * width`.
        expected: u64,
    },
    /// Any other inconsistency in a COCO file (unknown ids, duplicate ids, bad sizes, …).
    #[error("{path}: {reason}")]
    CocoInvalid {
        /// The annotation file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A decoded image does not have the size its annotation file claims.
    #[error(
        "{path}: image is {found_width}x{found_height} but the annotation file says {width}x{height}"
    )]
    ImageSize {
        /// The image file.
        path: PathBuf,
        /// Width in the annotation file.
        width: u32,
        /// Height in the annotation file.
        height: u32,
        /// Decoded width.
        found_width: u32,
        /// Decoded height.
        found_height: u32,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl DatasetError {
    /// An [`DatasetError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}
