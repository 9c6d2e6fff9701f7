//! The fused operations as a burn backend extension: implemented for `flex` (forward) and for
//! `Autodiff<flex>` (forward plus a hand-written backward step per operation).
//!
//! Each autodiff operation keeps what its backward pass needs in its own state (the dense inputs,
//! LayerNorm's row statistics, attention's probabilities) instead of recomputing it.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{Bytes, DType, Shape};

use super::conv::{self, ConvDims};
use super::kernels::{self, AttentionDims, GradLayout, LayerNormStats, Strided};
use super::matmul::{self, Mat};

/// Fused CPU operations (see the module docs of [`super`]).
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// LayerNorm over the last dimension with weight and bias.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// Exact-erf GELU.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Multi-head attention on `[B, N, H·hd]` operands: `q: [B, Nq, D]`, `k, v: [B, Nk, D]`
    /// → `[B, Nq, D]`.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;

    /// Self-attention on the output of a fused projection: `qkv: [B, N, 3D]` (queries, keys,
    /// values side by side) → `[B, N, D]`.
    fn fused_attention_packed(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self>;

    /// A Linear layer on rows: `x: [R, D_in]`, `weight: [D_in, D_out]`, `bias: [D_out]` →
    /// `x @ weight + bias: [R, D_out]`.
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// A convolution with stride 1, dilation 1, one group and zero padding `[top, left, bottom,
    /// right]`: `x: [B, C, H, W]`, `weight: [O, C, kh, kw]`, `bias: [O]` → `[B, O, H', W']`.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;

    /// [`Self::fused_conv2d`] without bias.
    fn fused_conv2d_no_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;

    /// A Linear layer without bias: `x: [R, D_in] @ weight: [D_in, D_out]`.
    fn fused_linear_no_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `t` as a dense buffer (a view is copied, a dense tensor is shared).
fn dense(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The `f32` elements of a dense tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fused kernels take dense f32 tensors")
}

/// A dense `f32` tensor.
fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 2, "expected a matrix, got {s:?}");
    [s[0], s[1]]
}

/// `x @ weight (+ bias)` on dense operands: the product starts from the bias rows, so the bias
/// costs no pass of its own.
fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
    let [rows, d_in] = dims2(x);
    let [d_in_w, d_out] = dims2(weight);
    assert_eq!(
        d_in, d_in_w,
        "linear: {d_in} input features, weight has {d_in_w}"
    );
    let xm = Mat::row_major(values(x), rows, d_in);
    let wm = Mat::row_major(values(weight), d_in, d_out);
    let y = match bias {
        Some(bias) => {
            let mut y = values(bias).repeat(rows);
            matmul::product_acc(&mut y, xm, wm);
            y
        }
        None => matmul::product(xm, wm),
    };
    tensor(y, Shape::from(vec![rows, d_out]))
}

/// The gradients of a Linear layer for the operands whose nodes are tracked: `dx = dy @ Wᵀ`,
/// `dW = xᵀ @ dy` (one product over all rows), `db = Σ_rows dy`.
fn linear_backward(
    dy: &FlexTensor,
    x: &FlexTensor,
    weight: &FlexTensor,
    want: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let [rows, d_in] = dims2(x);
    let [_, d_out] = dims2(weight);
    let dym = Mat::row_major(values(dy), rows, d_out);
    let dx = want[0].then(|| {
        let w = Mat::row_major(values(weight), d_in, d_out);
        tensor(matmul::product(dym, w.t()), Shape::from(vec![rows, d_in]))
    });
    let dw = want[1].then(|| {
        let xm = Mat::row_major(values(x), rows, d_in);
        tensor(matmul::product(xm.t(), dym), Shape::from(vec![d_in, d_out]))
    });
    let db = want[2].then(|| {
        tensor(
            matmul::column_sums(values(dy), d_out),
            Shape::from(vec![d_out]),
        )
    });
    [dx, dw, db]
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 4, "expected [B, C, H, W], got {s:?}");
    [s[0], s[1], s[2], s[3]]
}

fn conv_dims(x: &FlexTensor, weight: &FlexTensor, padding: [usize; 4]) -> ConvDims {
    let [batch, c_in, h, w] = dims4(x);
    let [c_out, c_w, kh, kw] = dims4(weight);
    assert_eq!(c_in, c_w, "conv2d: {c_in} input channels, weight has {c_w}");
    ConvDims {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        pad: padding,
    }
}

fn conv_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    d: &ConvDims,
) -> FlexTensor {
    let (ho, wo) = d.out_hw();
    let y = conv::conv2d_forward(values(x), values(weight), bias.map(values), d);
    tensor(y, Shape::from(vec![d.batch, d.c_out, ho, wo]))
}

/// The convolution's gradients `[dx, dweight, dbias]`, those asked for in `want`.
fn conv_grads(
    dy: &FlexTensor,
    state: &(FlexTensor, FlexTensor, ConvDims),
    want: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let (x, weight, d) = state;
    let [dx, dw, db] = conv::conv2d_backward(values(x), values(weight), values(dy), d, want);
    [
        dx.map(|g| tensor(g, x.layout().shape().clone())),
        dw.map(|g| tensor(g, weight.layout().shape().clone())),
        db.map(|g| tensor(g, Shape::from(vec![d.c_out]))),
    ]
}

fn dims3(t: &FlexTensor) -> [usize; 3] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 3, "fused attention takes [B, N, D] tensors");
    [s[0], s[1], s[2]]
}

fn ln_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
) -> (FlexTensor, LayerNormStats) {
    let shape = x.layout().shape().clone();
    let c = shape[shape.num_dims() - 1];
    let (y, stats) =
        kernels::layer_norm_forward(values(x), c, values(gamma), Some(values(beta)), eps as f32);
    (tensor(y, shape), stats)
}

/// The inputs of an attention call: buffers, where the operands sit in them, sizes.
struct AttentionInputs {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    at: [Strided; 3],
    dims: AttentionDims,
}

impl AttentionInputs {
    fn separate(q: FlexTensor, k: FlexTensor, v: FlexTensor, heads: usize) -> Self {
        let (q, k, v) = (dense(q), dense(k), dense(v));
        let [b, nq, d] = dims3(&q);
        let [_, nk, _] = dims3(&k);
        assert_eq!(dims3(&k), dims3(&v), "keys and values differ in shape");
        assert!(
            d % heads == 0,
            "width {d} is not a multiple of {heads} heads"
        );
        let hd = d / heads;
        Self {
            at: [
                Strided::dense(nq, d),
                Strided::dense(nk, d),
                Strided::dense(nk, d),
            ],
            q,
            k,
            v,
            dims: AttentionDims {
                batch: b,
                nq,
                nk,
                heads,
                head_dim: hd,
                scale: (hd as f32).powf(-0.5),
            },
        }
    }

    fn packed(qkv: FlexTensor, heads: usize) -> Self {
        let qkv = dense(qkv);
        let [b, n, d3] = dims3(&qkv);
        assert!(
            d3 % (3 * heads) == 0,
            "width {d3} is not 3 × heads × head_dim"
        );
        let d = d3 / 3;
        let hd = d / heads;
        let at = |col| Strided {
            batch_stride: n * d3,
            row_stride: d3,
            offset: col,
        };
        Self {
            at: [at(0), at(d), at(2 * d)],
            q: qkv.clone(),
            k: qkv.clone(),
            v: qkv,
            dims: AttentionDims {
                batch: b,
                nq: n,
                nk: n,
                heads,
                head_dim: hd,
                scale: (hd as f32).powf(-0.5),
            },
        }
    }

    fn out_shape(&self) -> Shape {
        let d = &self.dims;
        Shape::from(vec![d.batch, d.nq, d.heads * d.head_dim])
    }

    /// The output and, when `save`, the probabilities for the backward pass.
    fn forward(&self, save: bool) -> (FlexTensor, Option<Vec<f32>>) {
        let (out, probs) = kernels::attention_forward(
            (values(&self.q), self.at[0]),
            (values(&self.k), self.at[1]),
            (values(&self.v), self.at[2]),
            self.dims,
            save,
        );
        (tensor(out, self.out_shape()), probs)
    }

    /// Whether a tracked call keeps its probabilities ([`super::attention_save_budget`]).
    fn save(&self) -> bool {
        super::saves_attention_probs(self.dims, super::attention_save_budget())
    }

    fn backward(&self, dout: &FlexTensor, probs: Option<&[f32]>, layout: GradLayout) -> Vec<f32> {
        kernels::attention_backward(
            values(dout),
            (values(&self.q), self.at[0]),
            (values(&self.k), self.at[1]),
            (values(&self.v), self.at[2]),
            probs,
            self.dims,
            layout,
        )
    }
}

impl std::fmt::Debug for AttentionInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionInputs")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl Clone for AttentionInputs {
    fn clone(&self) -> Self {
        Self {
            q: self.q.clone(),
            k: self.k.clone(),
            v: self.v.clone(),
            at: self.at,
            dims: self.dims,
        }
    }
}

impl FusedOps for Flex {
    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        ln_forward(&dense(x), &dense(gamma), &dense(beta), eps).0
    }

    fn fused_gelu(x: FlexTensor) -> FlexTensor {
        let x = dense(x);
        tensor(
            kernels::gelu_forward(values(&x)),
            x.layout().shape().clone(),
        )
    }

    fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, heads: usize) -> FlexTensor {
        AttentionInputs::separate(q, k, v, heads).forward(false).0
    }

    fn fused_attention_packed(qkv: FlexTensor, heads: usize) -> FlexTensor {
        AttentionInputs::packed(qkv, heads).forward(false).0
    }

    fn fused_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: [usize; 4],
    ) -> FlexTensor {
        let (x, weight) = (dense(x), dense(weight));
        let d = conv_dims(&x, &weight, padding);
        conv_forward(&x, &weight, Some(&dense(bias)), &d)
    }

    fn fused_conv2d_no_bias(x: FlexTensor, weight: FlexTensor, padding: [usize; 4]) -> FlexTensor {
        let (x, weight) = (dense(x), dense(weight));
        let d = conv_dims(&x, &weight, padding);
        conv_forward(&x, &weight, None, &d)
    }

    fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&dense(x), &dense(weight), Some(&dense(bias)))
    }

    fn fused_linear_no_bias(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        linear_forward(&dense(x), &dense(weight), None)
    }
}

#[derive(Debug)]
struct LayerNormStep;

impl Backward<Flex, 3> for LayerNormStep {
    type State = (FlexTensor, FlexTensor, LayerNormStats);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let (x, gamma, stats) = ops.state;
        let shape = x.layout().shape().clone();
        let c = shape[shape.num_dims() - 1];
        let (dx, dgamma, dbeta) =
            kernels::layer_norm_backward(values(&x), values(&dy), c, values(&gamma), &stats);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, Shape::from(vec![c])));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, Shape::from(vec![c])));
        }
    }
}

#[derive(Debug)]
struct GeluStep;

impl Backward<Flex, 1> for GeluStep {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let x = ops.state;
        if let Some(node) = node_x {
            let dx = kernels::gelu_backward(values(&x), values(&dy));
            grads.register::<Flex>(node.id, tensor(dx, x.layout().shape().clone()));
        }
    }
}

#[derive(Debug)]
struct AttentionStep;

impl Backward<Flex, 3> for AttentionStep {
    type State = (AttentionInputs, std::sync::Arc<Option<Vec<f32>>>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let dout = dense(grads.consume::<Flex>(&ops.node));
        let (inputs, probs) = ops.state;
        let AttentionDims { batch, nq, nk, .. } = inputs.dims;
        let d = inputs.dims.heads * inputs.dims.head_dim;
        // One buffer per batch item: [dq (nq rows) | dk (nk rows) | dv (nk rows)], each D wide.
        let chunk = (nq + 2 * nk) * d;
        let at = |offset| Strided {
            batch_stride: chunk,
            row_stride: d,
            offset,
        };
        let layout = GradLayout {
            chunk,
            dq: at(0),
            dk: at(nq * d),
            dv: at((nq + nk) * d),
        };
        let grad = inputs.backward(&dout, probs.as_deref(), layout);
        let all = tensor(grad, Shape::from(vec![batch, nq + 2 * nk, d]));
        let part = |start, len| dense(all.narrow(1, start, len));
        if let Some(node) = node_q {
            grads.register::<Flex>(node.id, part(0, nq));
        }
        if let Some(node) = node_k {
            grads.register::<Flex>(node.id, part(nq, nk));
        }
        if let Some(node) = node_v {
            grads.register::<Flex>(node.id, part(nq + nk, nk));
        }
    }
}

#[derive(Debug)]
struct PackedAttentionStep;

impl Backward<Flex, 1> for PackedAttentionStep {
    type State = (AttentionInputs, std::sync::Arc<Option<Vec<f32>>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_qkv] = ops.parents;
        let dout = dense(grads.consume::<Flex>(&ops.node));
        let (inputs, probs) = ops.state;
        let Some(node) = node_qkv else {
            return;
        };
        let AttentionDims { batch, nq: n, .. } = inputs.dims;
        let d3 = 3 * inputs.dims.heads * inputs.dims.head_dim;
        let d = d3 / 3;
        let at = |offset| Strided {
            batch_stride: n * d3,
            row_stride: d3,
            offset,
        };
        let layout = GradLayout {
            chunk: n * d3,
            dq: at(0),
            dk: at(d),
            dv: at(2 * d),
        };
        let grad = inputs.backward(&dout, probs.as_deref(), layout);
        grads.register::<Flex>(node.id, tensor(grad, Shape::from(vec![batch, n, d3])));
    }
}

/// Which of a step's `[x, weight, bias]` gradients are wanted: the tracked ones among its `N`
/// parents (`N = 2`: no bias).
fn wanted<T, const N: usize>(parents: &[Option<T>; N]) -> [bool; 3] {
    let mut want = [false; 3];
    for (w, p) in want.iter_mut().zip(parents) {
        *w = p.is_some();
    }
    want
}

/// The backward of the fused Linear layer, with (`N = 3`) or without (`N = 2`) bias.
#[derive(Debug)]
struct LinearStep;

impl<const N: usize> Backward<Flex, N> for LinearStep {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let (x, weight) = &ops.state;
        let found = linear_backward(&dy, x, weight, wanted(&ops.parents));
        for (node, grad) in ops.parents.into_iter().zip(found) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// The backward of the fused convolution, with (`N = 3`) or without (`N = 2`) bias.
#[derive(Debug)]
struct ConvStep;

impl<const N: usize> Backward<Flex, N> for ConvStep {
    type State = (FlexTensor, FlexTensor, ConvDims);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let found = conv_grads(&dy, &ops.state, wanted(&ops.parents));
        for (node, grad) in ops.parents.into_iter().zip(found) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), gamma.node(), beta.node()];
        let x = dense(x.into_primitive());
        let gamma = dense(gamma.into_primitive());
        let beta = dense(beta.into_primitive());
        let (y, stats) = ln_forward(&x, &gamma, &beta, eps);
        match LayerNormStep
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, stats), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let guards = [x.node()];
        let x = dense(x.into_primitive());
        let y = tensor(
            kernels::gelu_forward(values(&x)),
            x.layout().shape().clone(),
        );
        match GeluStep.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        let guards = [q.node(), k.node(), v.node()];
        let inputs = AttentionInputs::separate(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            heads,
        );
        match AttentionStep
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) = inputs.forward(inputs.save());
                prep.finish((inputs, std::sync::Arc::new(probs)), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(inputs.forward(false).0),
        }
    }

    fn fused_attention_packed(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        let guards = [qkv.node()];
        let inputs = AttentionInputs::packed(qkv.into_primitive(), heads);
        match PackedAttentionStep
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) = inputs.forward(inputs.save());
                prep.finish((inputs, std::sync::Arc::new(probs)), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(inputs.forward(false).0),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node(), bias.node()];
        let x = dense(x.into_primitive());
        let weight = dense(weight.into_primitive());
        let y = linear_forward(&x, &weight, Some(&dense(bias.into_primitive())));
        match LinearStep.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_linear_no_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node()];
        let x = dense(x.into_primitive());
        let weight = dense(weight.into_primitive());
        let y = linear_forward(&x, &weight, None);
        match LinearStep.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node(), bias.node()];
        let x = dense(x.into_primitive());
        let weight = dense(weight.into_primitive());
        let d = conv_dims(&x, &weight, padding);
        let y = conv_forward(&x, &weight, Some(&dense(bias.into_primitive())), &d);
        match ConvStep.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight, d), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_conv2d_no_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node()];
        let x = dense(x.into_primitive());
        let weight = dense(weight.into_primitive());
        let d = conv_dims(&x, &weight, padding);
        let y = conv_forward(&x, &weight, None, &d);
        match ConvStep.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight, d), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
