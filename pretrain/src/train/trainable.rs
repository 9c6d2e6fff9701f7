//! The one way a module becomes trainable on the autodiff device, and the list of what trains.
//!
//! burn 0.22 keeps two things per float parameter: the tensor's *effective* gradient requirement
//! and the parameter's *configured* training state. A parameter created or loaded on a device
//! without autodiff has an effective requirement of `false` whatever its configured state, and
//! [`Module::fork`] copies the effective requirement: an encoder loaded on the plain device and
//! forked to the autodiff one holds autodiff tensors that nothing differentiates (the backbone
//! of every fine-tuning protocol stayed bit-identical until this was found). [`Module::train`]
//! applies the configured state. [`on_autodiff`] does both, so a parameter trains exactly when
//! its module says so: parameters made with `Param::from_tensor` / loaded from a file train,
//! the ones marked `set_require_grad(false)` (the fixed sin-cos position table, the regressor's
//! constant layer scales, BatchNorm's running statistics) stay frozen.
//!
//! Every protocol and pretraining build their trained modules through [`on_autodiff`]; a module
//! meant to stay frozen stays on the plain device (no graph at all). [`parameters`] lists every
//! float parameter with its path and whether it takes a gradient, for records and tests.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

/// `module` on the autodiff device `ad`, each parameter taking a gradient exactly when its
/// configured training state says so (see the module docs). Works from the plain device or from
/// `ad` itself (then it only re-applies the configured state).
///
/// # Panics
/// When `ad` is not an autodiff device: a caller that wants a frozen module keeps it on the plain
/// device instead.
pub fn on_autodiff<M: Module>(module: M, ad: &Device) -> M {
    assert!(
        ad.is_autodiff(),
        "on_autodiff needs an autodiff device, got {ad:?}"
    );
    module.fork(ad).train()
}

/// One float parameter of a module.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    /// Dotted path (`blocks.0.attn.qkv.weight`), the key the optimisers and checkpoints use.
    pub path: String,
    /// Number of dimensions.
    pub rank: usize,
    /// Number of elements.
    pub numel: usize,
    /// Whether the parameter takes a gradient (is trained).
    pub trainable: bool,
}

/// Every float parameter of `module`, in the module's order.
pub fn parameters<M: Module>(module: &M) -> Vec<ParamEntry> {
    let mut v = Lister {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

struct Lister {
    path: Vec<String>,
    out: Vec<ParamEntry>,
}

impl ModuleVisitor for Lister {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        self.out.push(ParamEntry {
            path: self.path.join("."),
            rank: D,
            numel: value.shape().num_elements(),
            trainable: value.is_require_grad(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CaeConfig;
    use crate::model::VisionTransformerEncoder;
    use crate::model::init::{Init, LinearInit};

    fn encoder(device: &Device) -> VisionTransformerEncoder {
        let cfg = CaeConfig::preset("test").unwrap();
        let mut init = Init::new(0, LinearInit::TruncNormal, device);
        VisionTransformerEncoder::new(&cfg.encoder, &mut init)
    }

    #[test]
    fn a_module_from_the_plain_device_trains_all_but_its_frozen_parameters() {
        let plain = Device::flex();
        let ad = plain.clone().autodiff();
        let enc = encoder(&plain);
        assert!(parameters(&enc).iter().all(|p| !p.trainable));
        // What burn's fork alone gives: nothing trains (the bug this module exists for).
        assert!(
            parameters(&enc.clone().fork(&ad))
                .iter()
                .all(|p| !p.trainable)
        );
        let params = parameters(&on_autodiff(enc, &ad));
        let frozen: Vec<&str> = params
            .iter()
            .filter(|p| !p.trainable)
            .map(|p| p.path.as_str())
            .collect();
        assert_eq!(frozen, ["pos_embed"], "only the sin-cos table stays frozen");
        assert!(params.iter().any(|p| p.path == "blocks.0.attn.qkv.weight"));
    }

    /// Pretraining builds its model on the plain device and moves it (`train::run`): the result
    /// trains exactly what the model built on the autodiff device trains, with the same values.
    #[test]
    fn pretraining_models_from_the_plain_device_train_as_if_built_on_autodiff() {
        use crate::config::Method;
        use crate::model::{BeitPretrain, ContextAutoencoder};
        let plain = Device::flex();
        let ad = plain.clone().autodiff();
        let values = |e: &ParamEntry| e.path.clone();
        for method in [Method::Cae, Method::Beit] {
            let mut cfg = CaeConfig::preset("test").unwrap();
            cfg.method = method;
            let (moved, direct) = match method {
                Method::Cae => (
                    parameters(&on_autodiff(ContextAutoencoder::new(&cfg, 5, &plain), &ad)),
                    parameters(&ContextAutoencoder::new(&cfg, 5, &ad)),
                ),
                Method::Beit => (
                    parameters(&on_autodiff(BeitPretrain::new(&cfg, 5, &plain), &ad)),
                    parameters(&BeitPretrain::new(&cfg, 5, &ad)),
                ),
            };
            assert_eq!(moved, direct, "{method:?}");
            assert!(moved.iter().filter(|p| p.trainable).count() > 10);
            let frozen: Vec<String> = moved.iter().filter(|p| !p.trainable).map(values).collect();
            assert!(
                frozen.iter().any(|p| p.ends_with("pos_embed")),
                "{frozen:?}"
            );
        }
    }

    #[test]
    fn a_module_built_on_the_autodiff_device_is_unchanged() {
        let ad = Device::flex().autodiff();
        let enc = encoder(&ad);
        let before = parameters(&enc);
        assert_eq!(parameters(&on_autodiff(enc, &ad)), before);
        assert_eq!(before.iter().filter(|p| !p.trainable).count(), 1);
    }
}
