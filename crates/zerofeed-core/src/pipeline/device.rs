//! `normalize_on_device`: which ops of each field run on the GPU, and the kernel's plan.
//!
//! The trailing `Normalize` (and an optional `ToCHW`) of a chain moves to the GPU kernel, so
//! the uint8 crop crosses the bus (4x fewer bytes than float32); crops and flips stay on the
//! host. The kernel's coefficients come from [`normalize_coefficients`], the same function
//! the host kernels use, so both paths accept and reject exactly the same inputs.

use crate::cuda::engine::FieldPlan;
use crate::dtype::DType;
use crate::ops::{normalize_coefficients, OpSpec};
use crate::source::{field_label, FieldSpec};

use super::{Pipeline, PipelineError};

/// One op chain per field.
pub type Chains = Vec<Vec<OpSpec>>;

/// Splits each field's chain into `(host ops, device tail)`. A chain without `Normalize`
/// stays on the host whole; one with it must end with exactly one `Normalize` and at most
/// one `ToCHW`, in either order.
pub fn split_device_ops(
    fields: &[FieldSpec],
    chains: Vec<Vec<OpSpec>>,
) -> Result<(Chains, Chains), PipelineError> {
    let mut host = Vec::with_capacity(chains.len());
    let mut device = Vec::with_capacity(chains.len());
    for (spec, mut chain) in fields.iter().zip(chains) {
        let is_tail = |op: &OpSpec| matches!(op, OpSpec::Normalize { .. } | OpSpec::ToCHW);
        let tail_len = chain.iter().rev().take_while(|op| is_tail(op)).count();
        let tail = chain.split_off(chain.len() - tail_len);
        let normalizes = |ops: &[OpSpec]| {
            ops.iter()
                .filter(|op| matches!(op, OpSpec::Normalize { .. }))
                .count()
        };
        let transposes = tail.iter().filter(|op| **op == OpSpec::ToCHW).count();
        if normalizes(&tail) == 1 && transposes <= 1 {
            host.push(chain);
            device.push(tail);
            continue;
        }
        if normalizes(&chain) + normalizes(&tail) > 0 {
            return Err(PipelineError::DeviceOps {
                label: spec.label(),
                reason: "the ops must end with Normalize (optionally with one ToCHW); nothing may follow them".into(),
            });
        }
        chain.extend(tail);
        host.push(chain);
        device.push(Vec::new());
    }
    Ok((host, device))
}

impl Pipeline {
    /// The device kernel's plan per field, for the tails [`split_device_ops`] returned.
    pub fn device_plans(&self, tails: &[Vec<OpSpec>]) -> Result<Vec<FieldPlan>, PipelineError> {
        self.fields
            .iter()
            .zip(tails)
            .map(|(field, tail)| {
                let label = field_label(field.name());
                let Some(OpSpec::Normalize {
                    mean,
                    std,
                    scale,
                    dtype,
                }) = tail
                    .iter()
                    .find(|op| matches!(op, OpSpec::Normalize { .. }))
                else {
                    return Ok(FieldPlan::Copy);
                };
                let &[height, width, channels] = field.output_shape() else {
                    return Err(device_input_error(
                        label,
                        field.output_dtype(),
                        field.output_shape(),
                    ));
                };
                if field.output_dtype() != DType::U8 {
                    return Err(device_input_error(
                        label,
                        field.output_dtype(),
                        field.output_shape(),
                    ));
                }
                // The device kernel reads uint8 (checked above).
                let scale = scale.unwrap_or(crate::ops::default_normalize_scale(DType::U8));
                let (a, b) =
                    normalize_coefficients("Normalize", mean, std, scale, channels, *dtype)
                        .map_err(|source| PipelineError::Ops { label, source })?;
                Ok(FieldPlan::Normalize {
                    height,
                    width,
                    channels,
                    a: a.iter().map(|&v| v as f32).collect(),
                    b: b.iter().map(|&v| v as f32).collect(),
                    dtype: *dtype,
                    chw: tail.contains(&OpSpec::ToCHW),
                })
            })
            .collect()
    }

    /// Per field: one device sample's shape and dtype.
    pub fn device_output(&self, plans: &[FieldPlan]) -> Vec<(Vec<usize>, DType)> {
        self.fields
            .iter()
            .zip(plans)
            .map(|(field, plan)| {
                let mut batch_shape = vec![1];
                batch_shape.extend_from_slice(field.output_shape());
                let (shape, dtype) = plan.output(&batch_shape, field.output_dtype());
                (shape[1..].to_vec(), dtype)
            })
            .collect()
    }

    /// Idle device bytes the device pool may keep: `prefetch + 2` device batches.
    pub fn device_budget(&self, plans: &[FieldPlan], prefetch: usize) -> usize {
        let batch: usize = self
            .fields
            .iter()
            .zip(plans)
            .map(|(field, plan)| {
                plan.output_bytes(field.sample_nbytes())
                    .saturating_mul(self.config.batch_size)
            })
            .fold(0, usize::saturating_add);
        batch.saturating_mul(prefetch.max(1).saturating_add(2))
    }
}

fn device_input_error(label: String, dtype: DType, shape: &[usize]) -> PipelineError {
    PipelineError::DeviceOps {
        reason: format!(
            "the GPU kernel normalizes uint8 (H, W, C) samples, but the host ops give {dtype} {shape:?}; drop Cast or normalize on the host"
        ),
        label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            dtype: DType::U8,
            shape: Some(vec![8, 8, 3]),
        }
    }

    fn normalize(std: f64) -> OpSpec {
        OpSpec::Normalize {
            mean: vec![0.5],
            std: vec![std],
            scale: Some(1.0 / 255.0),
            dtype: DType::F32,
        }
    }

    #[test]
    fn the_normalize_tail_goes_to_the_device() {
        let flip = OpSpec::RandomFlip { p: 0.5 };
        let (host, device) = split_device_ops(
            &[spec("x"), spec("y")],
            vec![
                vec![flip.clone(), normalize(0.2), OpSpec::ToCHW],
                vec![flip.clone()],
            ],
        )
        .unwrap();
        assert_eq!(host, vec![vec![flip.clone()], vec![flip]]);
        assert_eq!(device, vec![vec![normalize(0.2), OpSpec::ToCHW], vec![]]);
        let (host, device) =
            split_device_ops(&[spec("x")], vec![vec![OpSpec::ToCHW, normalize(0.2)]]).unwrap();
        assert_eq!(
            (host, device),
            (vec![vec![]], vec![vec![OpSpec::ToCHW, normalize(0.2)]])
        );
        let crop = OpSpec::RandomCrop {
            height: 2,
            width: 2,
        };
        let chain = vec![crop, OpSpec::ToCHW];
        let (host, device) = split_device_ops(&[spec("x")], vec![chain.clone()]).unwrap();
        assert_eq!((host, device), (vec![chain], vec![vec![]]));
    }

    #[test]
    fn a_normalize_that_is_not_last_is_refused() {
        let err = split_device_ops(
            &[spec("")],
            vec![vec![normalize(0.2), OpSpec::Cast { dtype: DType::F16 }]],
        )
        .unwrap_err();
        assert_eq!(err.argument(), "normalize_on_device");
        assert!(err.to_string().contains(": the source: "), "{err}");
    }
}
