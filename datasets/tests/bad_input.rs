//! The bad-input corpus: every malformed dataset gives its typed error, naming the file, and
//! nothing panics. The bad files are generated in temporary folders.

use std::path::{Path, PathBuf};

use cae_datasets::io::{save_label_png, save_rgb_jpeg, save_rgb_png};
use cae_datasets::{
    AdeDataset, AdeSplit, CocoDataset, CocoSplit, DatasetError, ImageFolder, LabelMap,
    UnlabelledFolder, load_label_map, load_rgb,
};
use image::RgbImage;
use serde_json::json;

fn img(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 9) as u8, (y * 7) as u8, 99]))
}

fn names(err: &DatasetError, file: &str) {
    assert!(
        err.to_string().contains(file),
        "error does not name {file}: {err}"
    );
}

#[test]
fn truncated_jpeg() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("train/cat/broken.jpg");
    save_rgb_jpeg(&p, &img(40, 30), 90).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = load_rgb(&p).unwrap_err();
    assert!(matches!(err, DatasetError::ImageDecode { .. }), "{err}");
    names(&err, "broken.jpg");
    // Through a reader too: opening succeeds (files are not decoded), loading fails.
    let f = ImageFolder::open(d.path().join("train")).unwrap();
    assert!(matches!(f.load(0), Err(DatasetError::ImageDecode { .. })));
}

#[test]
fn corrupt_png_and_garbage_files() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.png");
    save_rgb_png(&p, &img(8, 8)).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n / 2..].iter_mut().for_each(|b| *b = 0x5a);
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(
        load_rgb(&p),
        Err(DatasetError::ImageDecode { .. })
    ));
    let q = d.path().join("text.jpg");
    std::fs::write(&q, "this is not an image").unwrap();
    let err = load_rgb(&q).unwrap_err();
    assert!(matches!(err, DatasetError::ImageDecode { .. }));
    names(&err, "text.jpg");
    std::fs::write(&q, "").unwrap();
    assert!(matches!(
        load_rgb(&q),
        Err(DatasetError::ImageDecode { .. })
    ));
    assert!(matches!(
        load_rgb(d.path().join("missing.png")),
        Err(DatasetError::Io { .. })
    ));
}

fn ade_root(d: &Path) -> PathBuf {
    d.join("ADEChallengeData2016")
}

fn ade_pair(root: &Path, stem: &str, image: RgbImage, label: &LabelMap) {
    save_rgb_png(&root.join(format!("images/training/{stem}.png")), &image).unwrap();
    save_label_png(
        &root.join(format!("annotations/training/{stem}.png")),
        label,
    )
    .unwrap();
}

#[test]
fn label_map_of_another_size() {
    let d = tempfile::tempdir().unwrap();
    ade_pair(
        &ade_root(d.path()),
        "ADE_train_00000001",
        img(6, 4),
        &LabelMap::filled(5, 4, 1),
    );
    let ds = AdeDataset::open(d.path(), AdeSplit::Training).unwrap();
    let err = ds.load(0).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::SizeMismatch {
                label_width: 5,
                image_width: 6,
                ..
            }
        ),
        "{err}"
    );
    names(&err, "ADE_train_00000001.png");
}

#[test]
fn label_values_above_the_class_count() {
    let d = tempfile::tempdir().unwrap();
    let mut map = LabelMap::filled(4, 3, 0);
    map.data[5] = 151;
    map.data[6] = 255; // the ignore value is fine
    ade_pair(&ade_root(d.path()), "a", img(4, 3), &map);
    let ds = AdeDataset::open(d.path(), AdeSplit::Training).unwrap();
    let err = ds.load_raw(0).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::LabelValue {
                value: 151,
                x: 1,
                y: 1,
                num_classes: 150,
                ..
            }
        ),
        "{err}"
    );
    names(&err, "a.png");
    // 150 and 255 alone are valid.
    map.data[5] = 150;
    ade_pair(&ade_root(d.path()), "a", img(4, 3), &map);
    assert!(ds.load_raw(0).is_ok());
}

#[test]
fn label_map_that_is_not_grayscale() {
    let d = tempfile::tempdir().unwrap();
    let root = ade_root(d.path());
    save_rgb_png(&root.join("images/training/a.png"), &img(4, 3)).unwrap();
    save_rgb_png(&root.join("annotations/training/a.png"), &img(4, 3)).unwrap();
    let ds = AdeDataset::open(d.path(), AdeSplit::Training).unwrap();
    assert!(matches!(ds.load(0), Err(DatasetError::LabelFormat { .. })));
    let jpg = d.path().join("label.jpg");
    save_rgb_jpeg(&jpg, &img(4, 3), 90).unwrap();
    assert!(matches!(
        load_label_map(&jpg),
        Err(DatasetError::LabelFormat { .. })
    ));
}

#[test]
fn ade_missing_partner_files() {
    let d = tempfile::tempdir().unwrap();
    let root = ade_root(d.path());
    save_rgb_png(&root.join("images/training/lonely.png"), &img(4, 3)).unwrap();
    std::fs::create_dir_all(root.join("annotations/training")).unwrap();
    let err = AdeDataset::open(d.path(), AdeSplit::Training).unwrap_err();
    assert!(
        matches!(err, DatasetError::MissingAnnotation { .. }),
        "{err}"
    );
    names(&err, "lonely.png");
    std::fs::remove_file(root.join("images/training/lonely.png")).unwrap();
    save_label_png(
        &root.join("annotations/training/orphan.png"),
        &LabelMap::filled(4, 3, 0),
    )
    .unwrap();
    save_rgb_png(&root.join("images/training/b.png"), &img(4, 3)).unwrap();
    save_label_png(
        &root.join("annotations/training/b.png"),
        &LabelMap::filled(4, 3, 0),
    )
    .unwrap();
    let err = AdeDataset::open(d.path(), AdeSplit::Training).unwrap_err();
    assert!(
        matches!(err, DatasetError::OrphanAnnotation { .. }),
        "{err}"
    );
    names(&err, "orphan.png");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        AdeDataset::open(empty.path(), AdeSplit::Training),
        Err(DatasetError::NotFound { .. })
    ));
}

#[test]
fn empty_folder() {
    let d = tempfile::tempdir().unwrap();
    let err = ImageFolder::open(d.path()).unwrap_err();
    assert!(matches!(err, DatasetError::EmptyFolder { .. }), "{err}");
    let err = UnlabelledFolder::open(d.path()).unwrap_err();
    assert!(matches!(err, DatasetError::EmptyFolder { .. }), "{err}");
    std::fs::write(d.path().join("notes.txt"), "no images here").unwrap();
    assert!(matches!(
        UnlabelledFolder::open(d.path()),
        Err(DatasetError::EmptyFolder { .. })
    ));
    assert!(matches!(
        ImageFolder::open(d.path().join("nope")),
        Err(DatasetError::NotFound { .. })
    ));
    let root = ade_root(d.path());
    std::fs::create_dir_all(root.join("images/training")).unwrap();
    std::fs::create_dir_all(root.join("annotations/training")).unwrap();
    assert!(matches!(
        AdeDataset::open(d.path(), AdeSplit::Training),
        Err(DatasetError::EmptyFolder { .. })
    ));
}

#[test]
fn class_folder_without_images() {
    let d = tempfile::tempdir().unwrap();
    save_rgb_png(&d.path().join("cat/1.png"), &img(4, 4)).unwrap();
    std::fs::create_dir_all(d.path().join("dog")).unwrap();
    std::fs::write(d.path().join("dog/readme.txt"), "x").unwrap();
    let err = ImageFolder::open(d.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::EmptyClass { class, .. } if class == "dog"),
        "{err}"
    );
    names(&err, "dog");
}

/// A one-image COCO set in `d` with `anns`; returns the annotation file.
fn coco_case(d: &Path, images: serde_json::Value, anns: serde_json::Value) -> PathBuf {
    save_rgb_png(&d.join("val2017/000000000001.png"), &img(5, 4)).unwrap();
    let doc = json!({
        "images": images,
        "categories": [{"id": 1, "name": "disc"}, {"id": 4, "name": "star"}],
        "annotations": anns,
    });
    let p = d.join("annotations/instances_val2017.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
    p
}

fn one_image() -> serde_json::Value {
    json!([{"id": 1, "file_name": "000000000001.png", "width": 5, "height": 4}])
}

fn open(d: &Path) -> Result<CocoDataset, DatasetError> {
    CocoDataset::open(d, CocoSplit::Val2017)
}

#[test]
fn annotation_file_that_is_not_json() {
    let d = tempfile::tempdir().unwrap();
    let p = coco_case(d.path(), one_image(), json!([]));
    for text in [
        "<html>not json</html>",
        "",
        "{\"images\": [",
        "[1, 2, 3]",
        "{\"images\": 5}",
    ] {
        std::fs::write(&p, text).unwrap();
        let err = open(d.path()).unwrap_err();
        assert!(matches!(err, DatasetError::Json { .. }), "{text}: {err}");
        names(&err, "instances_val2017.json");
    }
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(open(d.path()), Err(DatasetError::Io { .. })));
}

#[test]
fn annotation_pointing_at_a_missing_image() {
    let d = tempfile::tempdir().unwrap();
    // The image entry names a file that is not there.
    let images = json!([{"id": 1, "file_name": "000000000001.png", "width": 5, "height": 4},
                        {"id": 2, "file_name": "000000000002.png", "width": 5, "height": 4}]);
    coco_case(
        d.path(),
        images,
        json!([{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}]),
    );
    let err = open(d.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::CocoMissingImage { image_id: 2, .. }),
        "{err}"
    );
    names(&err, "000000000002.png");
    // The annotation names an image id that the file does not list.
    coco_case(
        d.path(),
        one_image(),
        json!([{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}]),
    );
    let err = open(d.path()).unwrap_err();
    assert!(matches!(err, DatasetError::CocoInvalid { .. }), "{err}");
    assert!(err.to_string().contains("image id 9"));
}

#[test]
fn polygon_with_fewer_than_three_points() {
    let d = tempfile::tempdir().unwrap();
    coco_case(
        d.path(),
        one_image(),
        json!([{"id": 7, "image_id": 1, "category_id": 4, "bbox": [0, 0, 2, 2], "iscrowd": 0,
                "segmentation": [[0, 0, 2, 0, 2, 2], [0, 0, 2, 2]]}]),
    );
    let err = open(d.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::CocoPolygon {
                ann_id: 7,
                part: 1,
                coords: 4,
                ..
            }
        ),
        "{err}"
    );
    coco_case(
        d.path(),
        one_image(),
        json!([{"id": 7, "image_id": 1, "category_id": 4, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2]]}]),
    );
    assert!(matches!(
        open(d.path()),
        Err(DatasetError::CocoPolygon { coords: 5, .. })
    ));
}

#[test]
fn rle_counts_that_do_not_sum_to_h_times_w() {
    let d = tempfile::tempdir().unwrap();
    for counts in [
        json!([5, 2, 2, 2, 2, 2]),
        json!([5, 2, 2, 2, 2, 2, 9]),
        json!("522000"),
    ] {
        coco_case(
            d.path(),
            one_image(),
            json!([{"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1,
                    "segmentation": {"size": [4, 5], "counts": counts}}]),
        );
        let err = open(d.path()).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::CocoRleCounts {
                    ann_id: 3,
                    expected: 20,
                    ..
                }
            ),
            "{counts}: {err}"
        );
    }
    // Compressed counts past h*w ("5220009": the last run is 9 + 2 = 11 instead of 5).
    coco_case(
        d.path(),
        one_image(),
        json!([{"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": [4, 5], "counts": "5220009"}}]),
    );
    assert!(matches!(
        open(d.path()),
        Err(DatasetError::CocoRleCounts { sum: 26, .. })
    ));
    // A correct one passes.
    coco_case(
        d.path(),
        one_image(),
        json!([{"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": [4, 5], "counts": "5220003"}}]),
    );
    assert_eq!(
        open(d.path()).unwrap().load(0).unwrap().instances[0].area,
        6.0
    );
}

#[test]
fn other_coco_inconsistencies() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        // RLE of another size than its image.
        json!([{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": [5, 4], "counts": [20]}}]),
        // Unknown category.
        json!([{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "iscrowd": 0}]),
        // Duplicate annotation ids.
        json!([{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0},
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}]),
        // Negative box size.
        json!([{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "iscrowd": 0}]),
        // Malformed compressed counts.
        json!([{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": [4, 5], "counts": "\u{1}\u{2}"}}]),
    ];
    for anns in cases {
        coco_case(d.path(), one_image(), anns.clone());
        let err = open(d.path()).unwrap_err();
        assert!(
            matches!(err, DatasetError::CocoInvalid { .. }),
            "{anns}: {err}"
        );
        names(&err, "instances_val2017.json");
    }
    // An image whose real size differs from the file's.
    coco_case(
        d.path(),
        json!([{"id": 1, "file_name": "000000000001.png", "width": 6, "height": 4}]),
        json!([]),
    );
    let ds = open(d.path()).unwrap();
    assert!(matches!(
        ds.load(0),
        Err(DatasetError::ImageSize {
            found_width: 5,
            width: 6,
            ..
        })
    ));
}
