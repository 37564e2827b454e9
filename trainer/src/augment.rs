//! Data augmentation of gray face crops, with a small deterministic generator so that a run is
//! reproducible bit for bit from its seed (and a resumed run replays the same epochs).

/// SplitMix64: tiny, fast, and stable across library versions.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-a, a].
    pub fn symmetric(&mut self, a: f32) -> f32 {
        (self.unit() * 2.0 - 1.0) * a
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Augmentation ranges.
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    pub flip: bool,
    /// Degrees.
    pub rotate: f32,
    /// Relative scale change.
    pub scale: f32,
    /// Shift as a fraction of the side.
    pub shift: f32,
    /// Added brightness, fraction of 255.
    pub brightness: f32,
    /// Relative contrast change.
    pub contrast: f32,
}

impl Augment {
    /// The full ranges scaled by `strength` (0 = off, 1 = full).
    pub fn scaled(strength: f32) -> Augment {
        let s = strength.clamp(0.0, 2.0);
        Augment {
            flip: s > 0.0,
            rotate: 12.0 * s,
            scale: 0.12 * s,
            shift: 0.08 * s,
            brightness: 0.15 * s,
            contrast: 0.25 * s,
        }
    }
}

/// Returns an augmented copy of a `size × size` gray crop as 0–255 floats.
pub fn augment(pixels: &[u8], size: u32, a: &Augment, rng: &mut SplitMix64) -> Vec<f32> {
    let n = size as usize;
    let flip = a.flip && rng.unit() < 0.5;
    let angle = rng.symmetric(a.rotate).to_radians();
    let scale = 1.0 + rng.symmetric(a.scale);
    let (dx, dy) = (rng.symmetric(a.shift) * n as f32, rng.symmetric(a.shift) * n as f32);
    let brightness = rng.symmetric(a.brightness) * 255.0;
    let contrast = 1.0 + rng.symmetric(a.contrast);
    let (sin, cos) = angle.sin_cos();
    let c = n as f32 / 2.0;
    let at =
        |x: i64, y: i64| pixels[(y.clamp(0, n as i64 - 1) as usize) * n + x.clamp(0, n as i64 - 1) as usize] as f32;
    let mean = pixels.iter().map(|&p| p as f32).sum::<f32>() / pixels.len().max(1) as f32;
    let mut out = Vec::with_capacity(n * n);
    for y in 0..n {
        for x in 0..n {
            // Output pixel centre → source position (inverse of scale·rotate, then shift).
            let ox = if flip { n as f32 - 1.0 - x as f32 } else { x as f32 } + 0.5 - c - dx;
            let oy = y as f32 + 0.5 - c - dy;
            let sx = (cos * ox + sin * oy) / scale + c - 0.5;
            let sy = (-sin * ox + cos * oy) / scale + c - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (xi, yi) = (x0 as i64, y0 as i64);
            let v = (at(xi, yi) * (1.0 - fx) + at(xi + 1, yi) * fx) * (1.0 - fy)
                + (at(xi, yi + 1) * (1.0 - fx) + at(xi + 1, yi + 1) * fx) * fy;
            out.push(((v - mean) * contrast + mean + brightness).clamp(0.0, 255.0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_uniformish() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<f32> = (0..1000).map(|_| a.unit()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert_eq!(xs[..5], (0..5).map(|_| b.unit()).collect::<Vec<_>>()[..]);
        let mean = xs.iter().sum::<f32>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05);
    }

    #[test]
    fn zero_strength_is_identity_and_flip_mirrors() {
        let px: Vec<u8> = (0..16u8).map(|i| i * 10).collect();
        let mut rng = SplitMix64::new(1);
        let same = augment(&px, 4, &Augment::scaled(0.0), &mut rng);
        assert_eq!(same, px.iter().map(|&p| p as f32).collect::<Vec<_>>());
        let flip = Augment { flip: true, rotate: 0.0, scale: 0.0, shift: 0.0, brightness: 0.0, contrast: 0.0 };
        // Take a generator whose first draw (the flip coin) says "flip".
        let mut seeds = SplitMix64::new(123);
        let out = loop {
            let mut g = SplitMix64::new(seeds.next_u64());
            let probe = g.clone().unit();
            if probe < 0.5 {
                break augment(&px, 4, &flip, &mut g);
            }
        };
        assert_eq!(out[0], px[3] as f32);
        assert_eq!(out[3], px[0] as f32);
    }
}
