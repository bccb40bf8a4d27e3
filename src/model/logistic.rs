//! The logistic-regression baseline: standardised features (missing values at the training mean),
//! L2-penalised log-likelihood maximised by Newton's method with a Cholesky solve. Small, exact
//! and deterministic; the number the tree model must beat.

use serde::{Deserialize, Serialize};

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    pub weights: Vec<f64>,
    pub bias: f64,
    pub l2: f64,
    pub iterations: usize,
}

fn standardise(x: f64, mean: f64, scale: f64) -> f64 {
    if x.is_nan() { 0.0 } else { (x - mean) / scale }
}

impl Logistic {
    /// Fits on a column-major matrix (`cols × rows`).
    pub fn fit(data: &[f64], rows: usize, cols: usize, labels: &[bool], l2: f64) -> Logistic {
        let mut means = vec![0.0; cols];
        let mut scales = vec![1.0; cols];
        for c in 0..cols {
            let col = &data[c * rows..(c + 1) * rows];
            let (s, n) = col
                .iter()
                .filter(|x| !x.is_nan())
                .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            let m = if n == 0 { 0.0 } else { s / n as f64 };
            let v = col
                .iter()
                .filter(|x| !x.is_nan())
                .map(|x| (x - m).powi(2))
                .sum::<f64>()
                / n.max(1) as f64;
            means[c] = m;
            scales[c] = if v > 1e-12 { v.sqrt() } else { 1.0 };
        }
        // Row-major standardised design with a trailing 1 for the bias.
        let d = cols + 1;
        let mut x = vec![0.0; rows * d];
        for r in 0..rows {
            for c in 0..cols {
                x[r * d + c] = standardise(data[c * rows + r], means[c], scales[c]);
            }
            x[r * d + cols] = 1.0;
        }
        let mut w = vec![0.0; d];
        let mut iterations = 0;
        for _ in 0..25 {
            iterations += 1;
            let mut grad = vec![0.0; d];
            let mut hess = vec![0.0; d * d];
            for r in 0..rows {
                let xr = &x[r * d..(r + 1) * d];
                let z: f64 = xr.iter().zip(&w).map(|(a, b)| a * b).sum();
                let p = sigmoid(z);
                let g = p - f64::from(u8::from(labels[r]));
                let h = (p * (1.0 - p)).max(1e-12);
                for i in 0..d {
                    grad[i] += g * xr[i];
                    let hi = h * xr[i];
                    for j in 0..=i {
                        hess[i * d + j] += hi * xr[j];
                    }
                }
            }
            for i in 0..cols {
                grad[i] += l2 * w[i];
                hess[i * d + i] += l2;
            }
            hess[cols * d + cols] += 1e-9;
            let Some(step) = cholesky_solve(&mut hess, &grad, d) else {
                break;
            };
            let mut delta = 0.0f64;
            for i in 0..d {
                w[i] -= step[i];
                delta = delta.max(step[i].abs());
            }
            if delta < 1e-8 {
                break;
            }
        }
        let bias = w[cols];
        w.truncate(cols);
        Logistic {
            means,
            scales,
            weights: w,
            bias,
            l2,
            iterations,
        }
    }

    /// Log-odds for one encoded row.
    pub fn logit(&self, x: &[f64]) -> f64 {
        self.bias
            + x.iter()
                .zip(&self.weights)
                .zip(self.means.iter().zip(&self.scales))
                .map(|((&v, w), (&m, &s))| w * standardise(v, m, s))
                .sum::<f64>()
    }

    /// Per-feature log-odds contributions relative to the training mean.
    pub fn contributions(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(&self.weights)
            .zip(self.means.iter().zip(&self.scales))
            .map(|((&v, w), (&m, &s))| w * standardise(v, m, s))
            .collect()
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Solves `A x = b` for symmetric positive-definite `A` given by its lower triangle (row-major,
/// overwritten by the factor). `None` when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut s = a[j * n + j];
        for k in 0..j {
            s -= a[j * n + k] * a[j * n + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        a[j * n + j] = l;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / l;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * y[k];
        }
        y[i] = s / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= a[k * n + i] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_logistic_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let rows = 20_000;
        let (w0, w1, b) = (1.5, -0.8, 0.3);
        let mut data = vec![0.0; rows * 2];
        let mut y = Vec::with_capacity(rows);
        for r in 0..rows {
            let a: f64 = rng.random_range(-2.0..2.0);
            let c: f64 = rng.random_range(-2.0..2.0);
            data[r] = a;
            data[rows + r] = c;
            y.push(rng.random::<f64>() < sigmoid(w0 * a + w1 * c + b));
        }
        let m = Logistic::fit(&data, rows, 2, &y, 1e-6);
        // Back on the raw scale.
        let raw0 = m.weights[0] / m.scales[0];
        let raw1 = m.weights[1] / m.scales[1];
        assert!((raw0 - w0).abs() < 0.1, "{raw0}");
        assert!((raw1 - w1).abs() < 0.1, "{raw1}");
        assert!((m.logit(&[0.0, 0.0]) - b).abs() < 0.1);
        // Missing values sit at the mean: no contribution.
        assert_eq!(m.contributions(&[f64::NAN, 0.0])[0], 0.0);
    }
}
