//! Data parallel training across processes: the interface the training loop needs from a
//! collective-communication engine, the single-process case, and the gradient all-reduce.
//!
//! The engine itself is not written here: the `cae-bench` binary implements [`Collective`] on MPI
//! (the `mpi` cargo feature, `eval/src/dist.rs`), launched by `mpirun` / `srun`. Each process
//! (rank) trains on its shard of every batch (a function of seed, step and rank), the gradients are
//! summed with one all-reduce per step, and every rank then applies the same clipped AdamW update,
//! so the weights stay equal on every rank without being sent. Rank 0 alone writes checkpoints,
//! metrics and records.

use burn::module::ModuleVisitor;
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::optim::MultiGradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::PretrainError;

/// The collective operations of data-parallel training, over the processes of one job.
///
/// Every process calls the same operations in the same order (MPI's rule); a buffer has the same
/// length on every rank.
pub trait Collective {
    /// This process's index, `0..size`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum of every rank's `buf`.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), PretrainError>;
    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<(), PretrainError>;
    /// What the engine is, for run records (`"single process"`, `"MPI: Open MPI v4.1.4 …"`).
    fn describe(&self) -> String;
    /// Whether this rank writes files (rank 0).
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
    /// Replaces `buf` on every rank by rank 0's (an all-reduce where the other ranks add zeros,
    /// exact in floating point).
    fn broadcast_from_root(&self, buf: &mut [f32]) -> Result<(), PretrainError> {
        if self.size() == 1 {
            return Ok(());
        }
        if !self.is_root() {
            buf.fill(0.0);
        }
        self.all_reduce_sum(buf)
    }
}

/// Set in the environment, [`all_reduce_grads`] does nothing and each rank keeps its own
/// gradients. It exists so that the `mpirun` equality test (`eval/tests/mpi.rs`) can show that it
/// fails without the all-reduce; never set it for a real run.
pub const SKIP_GRADIENT_ALL_REDUCE: &str = "CAE_BENCH_TEST_SKIP_GRADIENT_ALL_REDUCE";

/// One process: every operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<(), PretrainError> {
        Ok(())
    }
    fn barrier(&self) -> Result<(), PretrainError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "single process".into()
    }
}

/// Takes every parameter's gradient out of `grads`, flattened in the module's visiting order
/// (zeros for a parameter without one), with a presence count per parameter.
struct Flatten<'a> {
    grads: &'a mut GradientsParams,
    values: Vec<f32>,
    present: Vec<f32>,
    error: Option<PretrainError>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.val().shape().num_elements();
        let taken = self.grads.remove::<D>(param.id).map(|g| {
            g.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| PretrainError::Backend(format!("reading a gradient: {e:?}")))
        });
        match taken {
            Some(Ok(v)) => {
                self.values.extend_from_slice(&v);
                self.present.push(1.0);
            }
            Some(Err(e)) => {
                self.error.get_or_insert(e);
                self.values.extend(std::iter::repeat_n(0.0, n));
                self.present.push(0.0);
            }
            None => {
                self.values.extend(std::iter::repeat_n(0.0, n));
                self.present.push(0.0);
            }
        }
    }
}

/// Puts flattened gradients back into `grads`, in the same order as [`Flatten`], for every
/// parameter whose presence count is positive.
struct Unflatten<'a> {
    grads: &'a mut GradientsParams,
    values: &'a [f32],
    present: &'a [f32],
    device: &'a Device,
    offset: usize,
    index: usize,
}

impl ModuleVisitor for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        if self.present[self.index] > 0.0 {
            let data = TensorData::new(self.values[self.offset..self.offset + n].to_vec(), dims);
            self.grads
                .register(param.id, Tensor::<D>::from_data(data, self.device));
        }
        self.offset += n;
        self.index += 1;
    }
}

/// Sums the gradients of every rank in place (one all-reduce of all gradients, flattened in
/// the module's parameter order, plus one presence count per parameter so that a parameter
/// without a gradient on some rank is still summed over the ranks that have one).
///
/// With one process this returns at once and leaves `grads` untouched.
pub fn all_reduce_grads<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    collective: &dyn Collective,
    device: &Device,
) -> Result<(), PretrainError> {
    if collective.size() == 1 || std::env::var_os(SKIP_GRADIENT_ALL_REDUCE).is_some() {
        return Ok(());
    }
    let mut flat = Flatten {
        grads,
        values: Vec::new(),
        present: Vec::new(),
        error: None,
    };
    model.visit(&mut flat);
    let Flatten {
        grads,
        mut values,
        present,
        error,
    } = flat;
    if let Some(e) = error {
        return Err(e);
    }
    // Presence counts after the values: each rank that has the gradient adds 1.
    let total = values.len();
    values.extend(present);
    collective.all_reduce_sum(&mut values)?;
    let (values, present) = values.split_at(total);
    model.visit(&mut Unflatten {
        grads,
        values,
        present,
        device,
        offset: 0,
        index: 0,
    });
    Ok(())
}

/// Combines per-device gradients into one set on `home` through burn's [`MultiGradientsParams`]
/// (each parameter's gradients summed on one device, then moved to the model's device).
pub fn combine_device_grads<M: Module>(
    model: &M,
    per_device: Vec<(GradientsParams, Device)>,
    home: &Device,
) -> GradientsParams {
    struct Combine<'a> {
        multi: MultiGradientsParams,
        out: GradientsParams,
        home: &'a Device,
    }
    impl ModuleVisitor for Combine<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some((g, _)) = self.multi.remove::<D>(param.id) {
                self.out.register(param.id, g.to_device(self.home));
            }
        }
    }
    let mut c = Combine {
        multi: MultiGradientsParams { grads: per_device },
        out: GradientsParams::new(),
        home,
    };
    model.visit(&mut c);
    c.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Distribution;

    /// Rank 0 of a pretend job of two whose other rank always contributes `other`.
    struct PairWith {
        other: std::cell::RefCell<Vec<f32>>,
        calls: std::cell::Cell<usize>,
    }

    impl Collective for PairWith {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), PretrainError> {
            self.calls.set(self.calls.get() + 1);
            let other = self.other.borrow();
            assert_eq!(other.len(), buf.len(), "ranks reduce buffers of one length");
            for (b, o) in buf.iter_mut().zip(other.iter()) {
                *b += o;
            }
            Ok(())
        }
        fn barrier(&self) -> Result<(), PretrainError> {
            Ok(())
        }
        fn describe(&self) -> String {
            "test pair".into()
        }
    }

    fn grads_of(model: &Linear, x: Tensor<2>) -> GradientsParams {
        let loss = model.forward(x).square().sum();
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn flat(g: &GradientsParams, model: &Linear) -> Vec<f32> {
        let mut v: Vec<f32> = g
            .get::<2>(model.weight.id)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        v.extend(
            g.get::<1>(model.bias.as_ref().unwrap().id)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        v
    }

    #[test]
    fn gradients_are_summed_over_ranks_in_parameter_order() {
        let dev = Device::flex().autodiff();
        let model = LinearConfig::new(3, 2).init(&dev);
        let x = Tensor::<2>::random([4, 3], Distribution::Default, &dev);
        let mut grads = grads_of(&model, x);
        let local = flat(&grads, &model);
        // The other rank's weight then bias gradients, then one presence count per parameter.
        let other: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).chain([1.0, 1.0]).collect();
        let pair = PairWith {
            other: std::cell::RefCell::new(other.clone()),
            calls: std::cell::Cell::new(0),
        };
        all_reduce_grads(&model, &mut grads, &pair, &dev).unwrap();
        assert_eq!(pair.calls.get(), 1, "one all-reduce per step");
        let summed = flat(&grads, &model);
        for (i, (s, l)) in summed.iter().zip(&local).enumerate() {
            assert_eq!(*s, l + other[i], "entry {i}");
        }
        // A parameter that has a gradient on no rank stays without one.
        let mut none = GradientsParams::new();
        let pair = PairWith {
            other: std::cell::RefCell::new(vec![0.0; 10]),
            calls: std::cell::Cell::new(0),
        };
        all_reduce_grads(&model, &mut none, &pair, &dev).unwrap();
        assert!(none.get::<2>(model.weight.id).is_none());
        // One process: nothing is exchanged.
        let mut g = grads_of(&model, Tensor::ones([1, 3], &dev));
        let before = flat(&g, &model);
        all_reduce_grads(&model, &mut g, &SingleProcess, &dev).unwrap();
        assert_eq!(flat(&g, &model), before);
    }

    #[test]
    fn broadcast_from_root_keeps_rank_zeros_values() {
        let pair = PairWith {
            other: std::cell::RefCell::new(vec![0.0; 3]),
            calls: std::cell::Cell::new(0),
        };
        let mut v = vec![1.5, -2.0, 3.25];
        pair.broadcast_from_root(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0, 3.25]);
    }

    #[test]
    fn device_gradients_combine_to_their_sum_on_the_home_device() {
        let dev = Device::flex().autodiff();
        let model = LinearConfig::new(3, 2).init(&dev);
        let a = grads_of(&model, Tensor::ones([2, 3], &dev));
        let b = grads_of(&model, Tensor::ones([2, 3], &dev).mul_scalar(-0.5));
        let (fa, fb) = (flat(&a, &model), flat(&b, &model));
        let combined = combine_device_grads(&model, vec![(a, dev.clone()), (b, dev.clone())], &dev);
        let fc = flat(&combined, &model);
        for i in 0..fc.len() {
            assert!((fc[i] - (fa[i] + fb[i])).abs() <= 1e-6, "entry {i}");
        }
        assert_eq!(model.num_params(), 8);
    }
}
