//! Where a CAE training step spends its time on the default CPU backend.
//!
//! ```text
//! cargo run --release -p cae-pretrain --example profile_step -- [preset] [batch] [repeats]
//! ```
//!
//! Part 1 times the phases of real steps: each forward sub-graph (student encoder, alignment
//! branch, regressor, decoder + loss), the backward pass, and clipping + AdamW. `flex` is eager, so
//! a sub-graph's wall time is its cost.
//!
//! Part 2 times every kind of operation the model runs, alone, at the model's shapes: forward, and
//! forward + backward (seeded with ones), multiplied by how often a step runs it. What is left of
//! the measured step is glue (reshapes, residual adds, layer scales, gathers, concatenations).
//!
//! `RAYON_NUM_THREADS` sets the threads; `CAE_UNFUSED=1` turns our fused kernels off.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Distribution, Tensor};
use cae_pretrain::CaeConfig;
use cae_pretrain::loss::cae_loss;
use cae_pretrain::model::{ContextAutoencoder, ForwardCtx, TokenSelection};
use cae_pretrain::optim::{AdamW, AdamWConfig, clip_grad_norm};
use cae_pretrain::train::bench::random_batch;
use cae_pretrain::train::step::targets_for;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Times `f` (which returns a tracked output) forward, then forward + backward.
fn op<F: Fn() -> Tensor<2>>(reps: usize, f: F) -> (f64, f64) {
    let mut fw = Vec::new();
    let mut fb = Vec::new();
    for _ in 0..reps + 1 {
        let t = Instant::now();
        let y = f();
        let a = ms(t);
        let g = y.backward();
        let b = ms(t);
        drop(g);
        fw.push(a);
        fb.push(b);
    }
    fw.remove(0);
    fb.remove(0);
    (median(fw), median(fb))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map_or("mini", String::as_str);
    let cfg = CaeConfig::preset(preset).expect("a preset");
    let batch: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(if preset == "mini" { 64 } else { 8 });
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dev = Device::flex().autodiff();
    let threads = rayon::current_num_threads();
    println!("# {preset}, batch {batch}, {threads} threads, {reps} repeats (medians)");

    // ---- Part 1: phases of real steps ----
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut model = ContextAutoencoder::new(&cfg, 0, &dev);
    let mut optim = AdamW::new(AdamWConfig::default());
    let names = [
        "forward: student encoder",
        "forward: alignment branch (no grad)",
        "forward: regressor",
        "forward: decoder + head + loss",
        "backward",
        "grads, clip, AdamW",
    ];
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut totals = Vec::new();
    for step in 0..reps + 1 {
        let b = random_batch(&cfg, batch, &mut rng, &dev).unwrap();
        let mut ctx = ForwardCtx::train(cae_pretrain::train::step_rng(0, step as u64));
        let t0 = Instant::now();
        let mut t = Instant::now();
        let mut lap = |i: usize, t: &mut Instant| {
            phases[i].push(ms(*t));
            *t = Instant::now();
        };
        let targets = targets_for(&cfg, &b).unwrap();
        let n = b.masks.num_patches;
        let visible = TokenSelection::from_rows(&b.masks.visible, n, &dev);
        let masked = TokenSelection::from_rows(&b.masks.masked, n, &dev);
        let enc = model
            .encoder
            .forward_selected(b.images.clone(), &visible, &mut ctx);
        let [_, v1, dd] = enc.dims();
        let z_visible = enc.narrow(1, 1, v1 - 1);
        lap(0, &mut t);
        let teacher = model.encoder.valid();
        let target =
            teacher.forward_selected(b.images.clone().without_autodiff(), &masked, &mut ctx);
        let [_, m1, _] = target.dims();
        let target = target.narrow(1, 1, m1 - 1);
        lap(1, &mut t);
        let rd = model.rd_pos_embed.val().squeeze_dim::<2>(0).narrow(0, 1, n);
        let pos_m = masked.gather_shared(rd.clone());
        let pos_v = visible.gather_shared(rd);
        let m = masked.per_sample;
        let queries = model.mask_token.val().expand([batch, m, dd]);
        let latent = model
            .regresser
            .forward(queries, z_visible, pos_m.clone(), pos_v, &mut ctx);
        lap(2, &mut t);
        let out = model.decoder.forward(latent.clone(), pos_m, &mut ctx);
        let [_, _, o] = out.dims();
        let loss = cae_loss(
            out.reshape([batch * m, o]),
            &targets,
            latent,
            Some(target),
            cfg.align_loss_weight,
        );
        let _: f32 = loss.loss.clone().into_scalar();
        lap(3, &mut t);
        let grads = loss.loss.backward();
        lap(4, &mut t);
        let mut grads = GradientsParams::from_grads(grads, &model);
        clip_grad_norm(&model, &mut grads, Some(3.0));
        model = optim.step(model, grads, 1e-4);
        lap(5, &mut t);
        totals.push(ms(t0));
    }
    let total = median(totals[1..].to_vec());
    println!("\n## Phases of a step (total {total:.1} ms)\n");
    println!("| phase | ms | share |\n|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        let v = median(phases[i][1..].to_vec());
        println!("| {name} | {v:.1} | {:.0}% |", 100.0 * v / total);
    }

    // ---- Part 2: operations at the model's shapes ----
    let e = &cfg.encoder;
    let d = e.embed_dim;
    let h = e.num_heads;
    let nv = e.num_patches() - cfg.mask.num_masked + 1; // [cls] + visible
    let m = cfg.mask.num_masked;
    let dd = cfg.decoder_embed_dim;
    let hdec = cfg.decoder_num_heads;
    let depth = e.depth;
    let (rdep, ddep) = (cfg.regressor_depth, cfg.decoder_depth);
    let hidden = e.mlp_hidden();
    let rnd = |shape: [usize; 2]| {
        Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &dev).require_grad()
    };
    let lin = |rows: usize, din: usize, dout: usize, bias: bool| {
        let x = rnd([rows, din]);
        let w = rnd([din, dout]);
        let b = bias.then(|| Tensor::<1>::zeros([dout], &dev).require_grad());
        op(reps, move || {
            burn::tensor::module::linear(x.clone(), w.clone(), b.clone())
        })
    };
    let ln = |rows: usize, dim: usize| {
        let x = rnd([rows, dim]);
        let norm = burn::nn::LayerNormConfig::new(dim)
            .with_epsilon(1e-6)
            .init(&dev);
        op(reps, move || norm.forward(x.clone()))
    };
    let gl = |rows: usize, dim: usize| {
        let x = rnd([rows, dim]);
        op(reps, move || gelu(x.clone()))
    };
    let attn = |b: usize, heads: usize, nq: usize, nk: usize, dim: usize| {
        let q = rnd([b * nq, dim]);
        let k = rnd([b * nk, dim]);
        let v = rnd([b * nk, dim]);
        op(reps, move || {
            let hd = dim / heads;
            let split = |x: Tensor<2>, n: usize| x.reshape([b, n, heads, hd]).swap_dims(1, 2);
            let q4 = split(q.clone(), nq).mul_scalar((hd as f64).powf(-0.5));
            let s = q4.matmul(split(k.clone(), nk).swap_dims(2, 3));
            let o = softmax(s, 3).matmul(split(v.clone(), nk));
            o.swap_dims(1, 2).reshape([b * nq, dim])
        })
    };
    let scale_res = |rows: usize, dim: usize| {
        let x = rnd([rows, dim]);
        let a = rnd([rows, dim]);
        let g = Tensor::<1>::ones([dim], &dev).require_grad();
        op(reps, move || {
            x.clone() + a.clone() * g.clone().unsqueeze::<2>()
        })
    };
    let re = batch * nv; // encoder rows
    let rq = batch * m; // regressor queries / decoder rows
    let rk = batch * (nv - 1 + m); // regressor keys / values
    type Row = (&'static str, usize, (f64, f64));
    let rows: Vec<Row> = vec![
        ("encoder qkv Linear", depth, lin(re, d, 3 * d, true)),
        ("encoder proj Linear", depth, lin(re, d, d, true)),
        ("encoder fc1 Linear", depth, lin(re, d, hidden, true)),
        ("encoder fc2 Linear", depth, lin(re, hidden, d, true)),
        ("encoder attention core", depth, attn(batch, h, nv, nv, d)),
        ("encoder LayerNorm", 2 * depth + 1, ln(re, d)),
        ("encoder GELU", depth, gl(re, hidden)),
        (
            "encoder layer scale + residual",
            2 * depth,
            scale_res(re, d),
        ),
        ("regressor q+proj Linear", 2 * rdep, lin(rq, dd, dd, true)),
        ("regressor k,v Linear", 2 * rdep, lin(rk, dd, dd, true)),
        ("regressor fc1 Linear", rdep, lin(rq, dd, 4 * dd, true)),
        ("regressor fc2 Linear", rdep, lin(rq, 4 * dd, dd, true)),
        (
            "regressor attention core",
            rdep,
            attn(batch, hdec, m, nv - 1 + m, dd),
        ),
        ("regressor LayerNorm (q, 2)", 2 * rdep + 1, ln(rq, dd)),
        ("regressor LayerNorm (k, v)", 2 * rdep, ln(rk, dd)),
        ("regressor GELU", rdep, gl(rq, 4 * dd)),
        ("decoder qkv Linear", ddep, lin(rq, dd, 3 * dd, true)),
        ("decoder proj Linear", ddep, lin(rq, dd, dd, true)),
        ("decoder fc1 Linear", ddep, lin(rq, dd, 4 * dd, true)),
        ("decoder fc2 Linear", ddep, lin(rq, 4 * dd, dd, true)),
        ("decoder attention core", ddep, attn(batch, hdec, m, m, dd)),
        ("decoder LayerNorm", 2 * ddep + 1, ln(rq, dd)),
        ("decoder GELU", ddep, gl(rq, 4 * dd)),
        ("head Linear", 1, lin(rq, dd, cfg.head_outputs(), true)),
    ];
    println!("\n## Operations (trainable path), ms per step = count × one call\n");
    println!(
        "| op | count | forward | backward | fwd+bwd | share of step |\n|---|---|---|---|---|---|"
    );
    let mut sum_f = 0.0;
    let mut sum_b = 0.0;
    for (name, count, (f, fb)) in &rows {
        let c = *count as f64;
        sum_f += c * f;
        sum_b += c * (fb - f);
        println!(
            "| {name} | {count} | {:.1} | {:.1} | {:.1} | {:.0}% |",
            c * f,
            c * (fb - f),
            c * fb,
            100.0 * c * fb / total
        );
    }
    println!(
        "| **sum** | | {sum_f:.1} | {sum_b:.1} | {:.1} | {:.0}% |",
        sum_f + sum_b,
        100.0 * (sum_f + sum_b) / total
    );
}
