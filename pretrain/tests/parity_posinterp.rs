//! A learned position table moved to another patch grid equals PyTorch's
//! `F.interpolate(mode='bicubic', align_corners=False)` on its patch part, cls slot kept.
//!
//! Reads every `posinterp_*.safetensors` in `tests/fixtures/reference/` (or `$CAE_REFERENCE_DIR`),
//! made by `scripts/make_posinterp_fixture.py`: `table` `[1, 1+g², D]` and `to_<h>x<w>` results.

use std::path::Path;

use cae_pretrain::model::pos_embed::resample_with_cls;
use cae_pretrain::parity::{
    ParityReport, add_to_f32, check_reference_files, compare, edited_reference_copy,
};
use cae_pretrain::weights::{read_file, tensor_to_f32};

fn run(path: &Path) -> Result<ParityReport, String> {
    let bytes = read_file(path).map_err(|e| e.to_string())?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let table = st
        .tensor("table")
        .map_err(|e| format!("{}: table: {e}", path.display()))?;
    let [_, n1, d] = <[usize; 3]>::try_from(table.shape().to_vec())
        .map_err(|_| format!("{}: table is not [1, 1+N, D]", path.display()))?;
    let g = ((n1 - 1) as f64).sqrt().round() as usize;
    let values = tensor_to_f32(&table)?;
    let mut report = ParityReport {
        kind: "posinterp".into(),
        checks: Vec::new(),
    };
    for name in st.names() {
        let Some(size) = name.strip_prefix("to_") else {
            continue;
        };
        let (h, w) = size
            .split_once('x')
            .and_then(|(h, w)| Some((h.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
            .ok_or_else(|| format!("{}: bad tensor name {name}", path.display()))?;
        let want = st.tensor(name).map_err(|e| e.to_string())?;
        let ours = resample_with_cls(&values, (g, g), d, (h, w));
        report.checks.push(compare(
            name,
            &ours,
            &[1, 1 + h * w, d],
            &tensor_to_f32(&want)?,
            want.shape(),
            1e-5,
        ));
    }
    Ok(report)
}

#[test]
fn torch_bicubic_reference_files_match() {
    check_reference_files(&["posinterp_"], 2, run).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_perturbed_reference_fails() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/posinterp_0.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("posinterp_x.safetensors");
    edited_reference_copy(&src, &dst, "to_10x12", add_to_f32(40, 1e-3)).unwrap();
    let report = run(&dst).unwrap();
    let fails: Vec<&str> = report.failures().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(fails, vec!["to_10x12"]);
}
