//! Published baselines: the bundled file parses, keeps its source and provenance, and renders.

use cae_reports::baselines::{
    BASELINES_CSV, BaselineFilter, Provenance, baselines, baselines_markdown, render_baselines,
    scope_text,
};

#[test]
fn the_bundled_file_parses_with_source_and_status() {
    let all = baselines().unwrap();
    assert_eq!(all.len(), BASELINES_CSV.lines().count() - 1);
    assert_eq!(all.len(), 52);
    let count = |p: Provenance| all.iter().filter(|b| b.status == p).count();
    assert_eq!(count(Provenance::Verified), 38);
    assert_eq!(count(Provenance::Secondary), 10);
    assert_eq!(count(Provenance::Unverified), 4);
    assert!(all.iter().all(|b| !b.source.is_empty()));
    let cae = all
        .iter()
        .find(|b| {
            b.method == "CAE"
                && b.arch == "ViT-B/16"
                && b.pretrain_epochs == 1600
                && b.task == "imagenet_linear"
        })
        .unwrap();
    assert_eq!(cae.value, 70.3);
    assert_eq!(cae.metric, "top1");
    assert_eq!(cae.status, Provenance::Verified);
    assert_eq!(cae.source, "Atten4Vis/CAE README.md");
    assert_eq!(cae.dataset(), "ImageNet");
}

#[test]
fn vit_b_imagenet_rows_render_with_provenance_and_source() {
    let filter = BaselineFilter::vit_b_imagenet();
    let md = render_baselines(&filter).unwrap();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| method | arch | pretrain epochs | task | metric | value (%) | protocol | provenance | checked |"
    );
    // 9 CAE + 4 CAE ablations (Table 5, linear) + 3 MAE + 3 BEiT.
    assert_eq!(lines.len(), 2 + 19, "{md}");
    assert!(md.contains(
        "| CAE | ViT-B/16 | 1600 | imagenet_linear | top1 | 70.3 | cls token + BN + linear | published, Atten4Vis/CAE README.md | verified |"
    ));
    assert!(md.contains(
        "| BEiT | ViT-B/16 | 800 | imagenet_finetune | top1 | 83.2 | fine-tune | published, BEiT paper as quoted in microsoft/unilm issue 391 | secondary |"
    ));
    assert!(md.contains(
        "| BEiT | ViT-B/16 | 300 | imagenet_linear | top1 | 37.6 | CAE paper re-evaluation | published, recollection of the CAE paper comparison table | unverified |"
    ));
    assert!(md.contains("| CAE (paper table 5: decoder; alignment) | ViT-B/16 | 300 | imagenet_linear | top1 | 64.1 |"));
    assert!(!md.contains("ViT-L/16") && !md.contains("ade20k") && !md.contains("coco"));
    for line in &lines[2..] {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert_eq!(cells.len(), 9, "{line}");
        assert!(
            ["verified", "secondary", "unverified"].contains(&cells[8].trim_end_matches(" |")),
            "{line}"
        );
        assert!(cells[7].starts_with("published, "), "{line}");
    }
    let all = baselines().unwrap();
    assert_eq!(scope_text(&filter.select(&all)), "ViT-B/16 on ImageNet");
}

#[test]
fn filters_by_task_method_arch_and_status() {
    let all = baselines().unwrap();
    let f = BaselineFilter {
        tasks: vec!["coco_maskrcnn_1x".into()],
        methods: vec!["mae".into()],
        archs: Vec::new(),
        statuses: vec![Provenance::Verified],
    };
    let rows = f.select(&all);
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|b| b.method == "MAE" && b.task == "coco_maskrcnn_1x")
    );
    assert_eq!(scope_text(&rows), "ViT-B/16 and ViT-L/16 on COCO");
    let md = baselines_markdown(&rows);
    assert!(md.contains("| MAE | ViT-L/16 | 1600 | coco_maskrcnn_1x | AP_mask | 47.1 | Mask R-CNN FPN 1x | published, Atten4Vis/CAE README.md | verified |"));
    let only_unverified = BaselineFilter {
        statuses: vec![Provenance::Unverified],
        ..Default::default()
    };
    assert_eq!(only_unverified.select(&all).len(), 4);
}

#[test]
fn published_is_the_bundled_file_with_a_source_on_every_row() {
    let rows = cae_reports::baselines::published().unwrap();
    assert_eq!(rows, baselines().unwrap());
    assert!(rows.iter().all(|b| !b.source.trim().is_empty()));
}
