//! The scalar types the CPU backend computes in: f32 for real work, f64 for gradient checks.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

pub trait Float:
    num_traits::Float + Copy + Send + Sync + Default + Debug + Sum + AddAssign + SubAssign + MulAssign + 'static
{
    const NAME: &'static str;
    fn from_f32(x: f32) -> Self;
    fn from_f64(x: f64) -> Self;
    fn as_f32(self) -> f32;
    fn as_f64(self) -> f64;
    fn erf(self) -> Self;
    fn c(x: f64) -> Self {
        Self::from_f64(x)
    }
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    fn from_f32(x: f32) -> Self {
        x
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f32(self) -> f32 {
        self
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn as_f32(self) -> f32 {
        self as f32
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}
