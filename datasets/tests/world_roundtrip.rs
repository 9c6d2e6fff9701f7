//! The synthetic world is read back by the three readers, its COCO file scores AP = 1 against
//! itself, and the same seed writes the same bytes whatever the thread count.

use std::collections::BTreeMap;
use std::path::Path;

use cae_datasets::synth::{SynthConfig, render_scene, write_world};
use cae_datasets::{
    AdeDataset, AdeSplit, CocoDataset, CocoSplit, ImageFolder, coco::annotation_rle,
};
use hotcoco::types::{Annotation, Segmentation};
use hotcoco::{COCO, COCOeval, IouType};

fn cfg() -> SynthConfig {
    SynthConfig::new(80, 32, 11)
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn three_readers_read_the_world_back() {
    let d = tempfile::tempdir().unwrap();
    let cfg = cfg();
    let summary = write_world(&cfg, d.path()).unwrap();
    assert_eq!((summary.train_images, summary.val_images), (64, 16));
    assert!(
        summary.polygons > 0 && summary.rles > 0 && summary.crowd > 0,
        "{summary:?}"
    );

    // ImageFolder: class folders in sorted name order, each image in its main class's folder.
    for (split, n) in [("train", 64), ("val", 16)] {
        let f = ImageFolder::open(d.path().join("imagefolder").join(split)).unwrap();
        let mut sorted = cfg.class_names();
        sorted.sort();
        assert_eq!(f.classes, sorted);
        assert_eq!(f.len(), n);
        for (path, label) in &f.samples {
            let index: usize = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let scene = render_scene(&cfg, index);
            assert_eq!(f.classes[*label], cfg.class_names()[scene.label]);
            assert_eq!(
                cae_datasets::load_rgb(path).unwrap(),
                scene.image,
                "PNG is lossless"
            );
        }
    }

    // ADE20K: label maps equal the scenes' semantic maps; images are JPEG-close.
    for (split, offset, n) in [(AdeSplit::Training, 0, 64), (AdeSplit::Validation, 64, 16)] {
        let ds = AdeDataset::open(d.path().join("ade"), split)
            .unwrap()
            .with_num_classes(8);
        assert_eq!(ds.len(), n);
        for i in 0..ds.len() {
            let (img, label) = ds.load_raw(i).unwrap();
            let scene = render_scene(&cfg, offset + i);
            assert_eq!(label, scene.semantic);
            let mad: f64 = img
                .iter()
                .zip(scene.image.iter())
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .sum::<f64>()
                / img.len() as f64;
            assert!(mad < 6.0, "JPEG too far from the scene: {mad}");
            let (_, reduced) = ds.load(i).unwrap();
            assert!(reduced.data.iter().all(|&v| v < 8 || v == 255));
        }
    }

    // COCO: categories 1..K, masks equal the scenes' object masks.
    let mut seen = (0, 0, 0);
    for (split, offset) in [(CocoSplit::Train2017, 0), (CocoSplit::Val2017, 64)] {
        let ds = CocoDataset::open(d.path().join("coco"), split).unwrap();
        assert_eq!(ds.cat_ids, (1..=8).collect::<Vec<u64>>());
        assert_eq!(ds.class_names(), cfg.class_names());
        for i in 0..ds.len() {
            let rec = ds.load(i).unwrap();
            let scene = render_scene(&cfg, offset + i);
            assert_eq!(rec.image, scene.image);
            assert_eq!(rec.image_id, offset as u64 + i as u64 + 1);
            assert_eq!(rec.instances.len(), scene.objects.len());
            for (inst, obj) in rec.instances.iter().zip(&scene.objects) {
                assert_eq!(inst.mask, obj.mask);
                assert_eq!(inst.label, obj.class);
                assert_eq!(inst.area, obj.area as f64);
                assert_eq!(inst.bbox, obj.bbox);
                assert_eq!(inst.iscrowd, obj.iscrowd);
            }
            for ann in ds.annotations(i) {
                match &ann.segmentation {
                    Some(Segmentation::Polygon(_)) => seen.0 += 1,
                    Some(Segmentation::CompressedRle { .. }) => seen.1 += 1,
                    Some(Segmentation::UncompressedRle { .. }) => {
                        assert!(ann.iscrowd);
                        seen.2 += 1
                    }
                    other => panic!("unexpected segmentation {other:?}"),
                }
            }
        }
    }
    assert_eq!(seen, (summary.polygons, summary.rles, summary.crowd));
}

fn self_ap(gt_file: &Path, iou: IouType) -> f64 {
    let gt = COCO::new(gt_file).unwrap();
    let mut dets = Vec::new();
    for ann in gt.dataset.annotations.iter().filter(|a| !a.iscrowd) {
        let img = gt.get_img(ann.image_id).unwrap();
        let mut d = Annotation {
            image_id: ann.image_id,
            category_id: ann.category_id,
            score: Some(1.0),
            ..Default::default()
        };
        match iou {
            IouType::Bbox => d.bbox = ann.bbox,
            _ => {
                let rle = annotation_rle(ann, img.height, img.width).unwrap();
                d.segmentation = Some(Segmentation::CompressedRle {
                    size: [rle.h, rle.w],
                    counts: hotcoco::mask::rle_to_string(&rle),
                });
            }
        }
        dets.push(d);
    }
    let dt = gt.load_res_anns(dets).unwrap();
    let mut ev = COCOeval::new(gt, dt, iou);
    ev.evaluate().unwrap();
    ev.accumulate();
    ev.summarize();
    ev.stats().unwrap()[0]
}

#[test]
fn coco_file_scores_ap_one_against_itself() {
    let d = tempfile::tempdir().unwrap();
    write_world(&cfg(), d.path()).unwrap();
    for split in ["train2017", "val2017"] {
        let gt = d
            .path()
            .join(format!("coco/annotations/instances_{split}.json"));
        for iou in [IouType::Bbox, IouType::Segm] {
            let ap = self_ap(&gt, iou);
            assert!((ap - 1.0).abs() < 1e-12, "{split} {iou:?}: AP {ap}");
        }
    }
}

#[test]
fn same_seed_same_bytes_for_any_thread_count() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = SynthConfig::new(40, 32, 4);
    write_world(&cfg, a.path()).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one.install(|| write_world(&cfg, b.path())).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(fa.len() > 4 * 40);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{k} differs");
    }
    let c = tempfile::tempdir().unwrap();
    write_world(
        &SynthConfig {
            seed: 5,
            ..cfg.clone()
        },
        c.path(),
    )
    .unwrap();
    // Rewriting an earlier world replaces it (no stale files from a bigger one).
    write_world(
        &SynthConfig {
            images: 60,
            ..cfg.clone()
        },
        b.path(),
    )
    .unwrap();
    write_world(&cfg, b.path()).unwrap();
    assert_eq!(files(b.path()).len(), fa.len());
    // A folder that is not a world is left alone.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("precious.txt"), "keep").unwrap();
    assert!(write_world(&cfg, other.path()).is_err());
    assert!(other.path().join("precious.txt").exists());
    assert_ne!(
        files(c.path())["coco/annotations/instances_train2017.json"],
        fa["coco/annotations/instances_train2017.json"]
    );
}

/// The world without stuff classes is the world rendered before the option existed: a sha256 over
/// the first 48 scenes of `SynthConfig::new(48, 32, 4)` (pixels, ADE label map, every object's
/// class, area, box and mask) computed by commit `039cede`. (File bytes are not compared: PNG
/// compression depends on the features the build unifies.)
#[test]
fn a_world_without_stuff_is_the_world_rendered_before_stuff_existed() {
    use sha2::{Digest, Sha256};
    let cfg = SynthConfig::new(48, 32, 4);
    let mut h = Sha256::new();
    for i in 0..cfg.images {
        let s = render_scene(&cfg, i);
        h.update(s.image.as_raw());
        h.update(&s.semantic.data);
        for o in &s.objects {
            h.update((o.class as u64).to_le_bytes());
            h.update(o.area.to_le_bytes());
            for v in o.bbox {
                h.update(v.to_le_bytes());
            }
            h.update(&o.mask.data);
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "6efe5ac1401f931575462e42a654a88b5aae4b1bf3fc085813a9b3a73fcae2ca"
    );
}
