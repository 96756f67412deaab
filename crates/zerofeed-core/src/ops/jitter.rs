//! `ColorJitter` on a finished (output-size) image, with torchvision's definitions.
//!
//! The factors are drawn once per sample (brightness, then contrast, then saturation, each
//! uniform in `[max(0, 1 - x), 1 + x]`) and applied in that fixed order, where torchvision
//! permutes the order per call. The arithmetic is torchvision's for tensors, in float32:
//! - brightness: `x * f`;
//! - contrast: blend with the mean of the grayscale image (`0.2989 R + 0.587 G + 0.114 B`,
//!   floored for uint8; the plain mean for one channel);
//! - saturation: blend with the pixel's grayscale (floored for uint8); one channel is left
//!   as it is.
//!
//! where `blend(x, y, f) = x * f + y * (1 - f)` (the `+` fused, as torch's `add_(alpha=)`), clamped to `[0, 255]` and truncated for
//! uint8 (`.to(torch.uint8)`). Images are uint8 (the image ops' input type).

use crate::sampler::CounterRng;

/// The three factors of one sample (1.0 = unchanged).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factors {
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor.
    pub contrast: f64,
    /// Saturation factor.
    pub saturation: f64,
}

/// The factors of one sample: draws 0, 1, 2 of `rng`; a zero range leaves its factor
/// exactly 1.
pub fn factors(rng: &CounterRng, brightness: f64, contrast: f64, saturation: f64) -> Factors {
    let pick = |draw: u64, x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let lo = (1.0 - x).max(0.0);
            lo + rng.uniform_f64(draw) * (1.0 + x - lo)
        }
    };
    Factors {
        brightness: pick(0, brightness),
        contrast: pick(1, contrast),
        saturation: pick(2, saturation),
    }
}

#[inline]
fn settle(v: f32) -> u8 {
    // torchvision clamps, then `.to(uint8)` truncates.
    v.clamp(0.0, 255.0) as u8
}

/// torchvision's grayscale of a uint8 pixel, floored (`_rgb_to_grayscale_image(...).floor_()`).
#[inline]
fn gray(px: &[u8]) -> f32 {
    // `r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)`: torch's `add_` with alpha
    // is a fused multiply-add on CPU, so the roundings match only with `mul_add`.
    let rg = f32::from(px[1]).mul_add(0.587, f32::from(px[0]) * 0.2989);
    f32::from(px[2]).mul_add(0.114, rg).floor()
}

/// Applies the factors to an HWC image of `c` channels in place.
pub(crate) fn apply(img: &mut [u8], c: usize, f: Factors) {
    if f.brightness != 1.0 {
        let b = f.brightness as f32;
        img.iter_mut().for_each(|x| *x = settle(f32::from(*x) * b));
    }
    if f.contrast != 1.0 && !img.is_empty() {
        let total: f64 = if c == 3 {
            img.chunks_exact(3).map(|p| f64::from(gray(p))).sum()
        } else {
            img.iter().map(|x| f64::from(*x)).sum()
        };
        let pixels = if c == 3 { img.len() / 3 } else { img.len() };
        let mean = (total / pixels as f64) as f32;
        let (r, q) = (f.contrast as f32, (1.0 - f.contrast) as f32);
        img.iter_mut()
            .for_each(|x| *x = settle(mean.mul_add(q, f32::from(*x) * r)));
    }
    if f.saturation != 1.0 && c == 3 {
        let (r, q) = (f.saturation as f32, (1.0 - f.saturation) as f32);
        for px in img.chunks_exact_mut(3) {
            let g = gray(px);
            px.iter_mut()
                .for_each(|x| *x = settle(g.mul_add(q, f32::from(*x) * r)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_factors_change_nothing_and_zero_saturation_is_gray() {
        let mut img: Vec<u8> = vec![10, 200, 30, 255, 0, 128];
        let before = img.clone();
        let one = Factors {
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
        };
        apply(&mut img, 3, one);
        assert_eq!(img, before);
        apply(
            &mut img,
            3,
            Factors {
                saturation: 0.0,
                ..one
            },
        );
        assert_eq!(img[0], img[1]);
        assert_eq!(img[1], img[2]);
        assert_eq!(img[0], gray(&before[..3]) as u8);
    }

    #[test]
    fn factor_ranges() {
        for i in 0..200 {
            let rng = CounterRng::new(7, &[i]);
            let f = factors(&rng, 0.4, 1.5, 0.0);
            assert!((0.6..1.4).contains(&f.brightness));
            assert!((0.0..2.5).contains(&f.contrast));
            assert_eq!(f.saturation, 1.0);
        }
    }
}
