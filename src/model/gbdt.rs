//! The gradient-boosted tree learner (binary log loss) behind `train`, built for the search:
//!
//! - the training and validation matrices are quantised once per dataset ([`Binned`]: at most 255
//!   value bins plus a missing bin per feature, one `u8` per cell) and shared by every trial and
//!   every round; a trial's `nbins` only restricts which bin boundaries it may split at;
//! - histograms add only the cells that are not their feature's most frequent bin (a row-wise
//!   sparse list) and recover that bin from the node's total, as LightGBM does; rows are
//!   partitioned in place on a column-major copy;
//! - trees grow leaf-wise up to `max_leaves` (best gain first, like LightGBM; no cap = depth-wise
//!   down to `max_depth`); each split builds the histogram of its smaller child and takes the
//!   larger child's as the parent's minus it, and children that cannot split get none;
//! - a [`Trial`] is a booster that can be continued to a larger tree budget, so successive halving
//!   continues the survivors of a rung instead of refitting them;
//! - finished boosters are exported as forust-ml 0.8 trees ([`Trial::into_booster`]), so
//!   prediction, SHAP contributions and the model file format stay exactly those of forust-ml.
//!
//! Split rules follow forust-ml's: gain `G²/(H+λ)`, a split must gain more than `gamma` and leave
//! a hessian sum of at least `min_leaf_weight` on both sides, missing values go to whichever side
//! gains more, leaf weights are `-G/(H+λ)` times the learning rate, base score is the training
//! log-odds, and early stopping watches validation log loss.
//!
//! Deterministic: the same data, parameters and seed give bit-identical trees at any thread count
//! (histograms are summed over fixed row chunks in a fixed order).
//!
//! This module knows nothing about features, files or the search's schedule.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::params::TrialParams;

/// Value bins per feature at most (bin 0 holds missing values, so a cell fits a `u8`).
const MAX_VALUE_BINS: usize = 255;
/// Rows per histogram chunk: histograms are summed chunk by chunk in this fixed order, whatever
/// the thread count.
const CHUNK: usize = 8192;

/// A quantised matrix: `bins[row * cols + feature]`, 0 = missing, else the value's bin (1-based).
pub(crate) struct BinMatrix {
    pub rows: usize,
    cols: usize,
    bins: Vec<u8>,
}

impl BinMatrix {
    fn row(&self, r: usize) -> &[u8] {
        &self.bins[r * self.cols..(r + 1) * self.cols]
    }
}

/// The bin boundaries of every feature, fitted on the training split, and the quantised training
/// and validation matrices.
pub(crate) struct Binned {
    cols: usize,
    /// Per feature, ascending cut values: a value `v` falls in bin `1 + #{c : c <= v}`.
    cuts: Vec<Vec<f64>>,
    /// Per feature, where its bins start in a flat histogram (`cuts.len() + 2` bins each).
    offsets: Vec<usize>,
    /// Training rows per (feature, bin), flat like a histogram.
    counts: Vec<u32>,
    /// Per feature, its most frequent training bin. Histograms skip these cells and recover
    /// them as the node's total minus the feature's other bins (LightGBM's most-frequent-bin
    /// trick): most features here are near-constant, so most cells are skipped.
    mfb: Vec<u8>,
    /// Per training row, where its cells start in `cells` (`rows + 1` entries).
    row_ptr: Vec<u32>,
    /// The training rows' cells that are not their feature's most frequent bin, as flat
    /// histogram positions (`offsets[f] + bin`), row by row.
    cells: Vec<u16>,
    /// The training bins column-major (`train_cols[f * rows + r]`), for partitioning rows.
    train_cols: Vec<u8>,
    pub train: BinMatrix,
    pub valid: BinMatrix,
    train_y: Vec<f64>,
    valid_y: Vec<f64>,
}

fn fit_cuts(column: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = column.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let mut distinct = v.clone();
    distinct.dedup();
    if distinct.len() <= MAX_VALUE_BINS {
        // One bin per distinct value: splitting at value `c` sends `v < c` left, as forust does.
        return distinct.into_iter().skip(1).collect();
    }
    // Equal-frequency cuts at training quantiles (each cut is a training value).
    let mut cuts: Vec<f64> = (1..MAX_VALUE_BINS)
        .map(|i| v[i * v.len() / MAX_VALUE_BINS])
        .collect();
    cuts.dedup();
    if cuts.first() == v.first() {
        cuts.remove(0);
    }
    cuts
}

fn bin_of(cuts: &[f64], x: f64) -> u8 {
    if x.is_nan() {
        0
    } else {
        (1 + cuts.partition_point(|&c| c <= x)) as u8
    }
}

fn quantise(cuts: &[Vec<f64>], cols_major: &[f64], rows: usize) -> BinMatrix {
    let cols = cuts.len();
    let mut bins = vec![0u8; rows * cols];
    for (f, c) in cuts.iter().enumerate() {
        let column = &cols_major[f * rows..(f + 1) * rows];
        for (r, &x) in column.iter().enumerate() {
            bins[r * cols + f] = bin_of(c, x);
        }
    }
    BinMatrix { rows, cols, bins }
}

impl Binned {
    /// Quantises column-major training and validation matrices (`cols` features each), with
    /// 0/1 labels.
    pub fn new(
        train: &[f64],
        train_y: &[f64],
        valid: &[f64],
        valid_y: &[f64],
        cols: usize,
    ) -> Binned {
        let (n, nv) = (train_y.len(), valid_y.len());
        let cuts: Vec<Vec<f64>> = (0..cols)
            .map(|f| fit_cuts(&train[f * n..(f + 1) * n]))
            .collect();
        let mut offsets = Vec::with_capacity(cols + 1);
        let mut total = 0;
        for c in &cuts {
            offsets.push(total);
            total += c.len() + 2;
        }
        offsets.push(total);
        let train = quantise(&cuts, train, n);
        let valid = quantise(&cuts, valid, nv);
        assert!(
            total <= usize::from(u16::MAX),
            "histogram positions fit a u16 (at most 257 bins for each of {cols} features)"
        );
        let mut counts = vec![0u32; total];
        for r in 0..n {
            for (f, &b) in train.row(r).iter().enumerate() {
                counts[offsets[f] + b as usize] += 1;
            }
        }
        let mfb: Vec<u8> = (0..cols)
            .map(|f| {
                let c = &counts[offsets[f]..offsets[f + 1]];
                // Ties go to the lowest bin.
                let mut best = 0;
                for (b, &k) in c.iter().enumerate() {
                    if k > c[best] {
                        best = b;
                    }
                }
                best as u8
            })
            .collect();
        let mut row_ptr = Vec::with_capacity(n + 1);
        let mut cells = Vec::new();
        row_ptr.push(0u32);
        for r in 0..n {
            for (f, &b) in train.row(r).iter().enumerate() {
                if b != mfb[f] {
                    cells.push((offsets[f] + b as usize) as u16);
                }
            }
            row_ptr.push(cells.len() as u32);
        }
        let mut train_cols = vec![0u8; n * cols];
        for r in 0..n {
            for (f, &b) in train.row(r).iter().enumerate() {
                train_cols[f * n + r] = b;
            }
        }
        Binned {
            cols,
            cuts,
            offsets,
            counts,
            mfb,
            row_ptr,
            cells,
            train_cols,
            train,
            valid,
            train_y: train_y.to_vec(),
            valid_y: valid_y.to_vec(),
        }
    }

    /// Which bin boundaries a trial with `nbins` value bins may split at: `allowed[offsets[f] +
    /// b]` means "bins 1..=b left" is a candidate. Features with at most `nbins` distinct values
    /// keep every boundary; others keep the boundaries nearest to `nbins` equal-frequency
    /// quantiles.
    fn boundaries(&self, nbins: usize) -> Vec<bool> {
        let mut allowed = vec![false; *self.offsets.last().unwrap_or(&0)];
        for f in 0..self.cols {
            let off = self.offsets[f];
            let value_bins = self.cuts[f].len() + 1;
            // Boundary b = 0 (missing alone on one side) and b = value_bins (all values on one
            // side) separate missing from present values: always allowed, like forust.
            allowed[off] = true;
            allowed[off + value_bins] = true;
            if value_bins <= nbins.max(1) {
                for b in 1..value_bins {
                    allowed[off + b] = true;
                }
                continue;
            }
            let counts = &self.counts[off + 1..off + 1 + value_bins];
            let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
            let mut cum = 0u64;
            let mut next = 1;
            for (i, &c) in counts.iter().enumerate().take(value_bins - 1) {
                cum += u64::from(c);
                // Boundary after value bin i+1 once the cumulative share passes next/nbins.
                if cum * nbins as u64 >= next * total {
                    allowed[off + i + 1] = true;
                    while next < nbins as u64 && cum * nbins as u64 >= next * total {
                        next += 1;
                    }
                }
            }
        }
        allowed
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean validation log loss, as forust computes it.
fn log_loss(y: &[f64], raw: &[f64]) -> f64 {
    let s: f64 = y
        .iter()
        .zip(raw)
        .map(|(&y, &r)| {
            let p = sigmoid(r);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    s / y.len().max(1) as f64
}

/// A tree node during training and for binned prediction.
#[derive(Clone, Debug)]
struct TNode {
    /// Leaf weight (already scaled by the learning rate); for splits, the node's own weight.
    weight: f64,
    hessian: f64,
    depth: usize,
    /// `None` for leaves.
    split: Option<Split>,
}

#[derive(Clone, Copy, Debug)]
struct Split {
    feature: usize,
    /// Value bins `1..=bin` go left.
    bin: u8,
    missing_left: bool,
    gain: f64,
    left: usize,
    right: usize,
}

impl Split {
    fn goes_left(&self, b: u8) -> bool {
        if b == 0 {
            self.missing_left
        } else {
            b <= self.bin
        }
    }
}

fn predict_binned(nodes: &[TNode], row: &[u8]) -> f64 {
    let mut i = 0;
    loop {
        let n = &nodes[i];
        match &n.split {
            None => return n.weight,
            Some(s) => {
                i = if s.goes_left(row[s.feature]) {
                    s.left
                } else {
                    s.right
                }
            }
        }
    }
}

/// Sums of gradients and hessians per (feature, bin), flat by [`Binned::offsets`].
type Hist = Vec<[f64; 2]>;

/// A booster in progress for one set of parameters: continue it with [`Trial::advance`].
pub(crate) struct Trial {
    pub params: TrialParams,
    rng: ChaCha8Rng,
    allowed: Vec<bool>,
    base_score: f64,
    trees: Vec<Vec<TNode>>,
    train_raw: Vec<f64>,
    valid_raw: Vec<f64>,
    /// Validation raw scores at the best iteration so far.
    best_valid_raw: Vec<f64>,
    best_loss: f64,
    best_iteration: usize,
    /// Early stopping fired: more budget would not add trees.
    pub stopped: bool,
    // Scratch buffers reused across rounds.
    grad: Vec<[f64; 2]>,
}

/// Where a node's rows are in the row index, and its sums and histogram.
struct Open {
    node: usize,
    start: usize,
    end: usize,
    g: f64,
    h: f64,
    hist: Hist,
    /// Its best split, once its histogram is known.
    best: Option<Candidate>,
}

impl Trial {
    pub fn new(data: &Binned, params: TrialParams, seed: u64) -> Trial {
        let y = &data.train_y;
        let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
        let mean = mean.clamp(1e-12, 1.0 - 1e-12);
        let base_score = (mean / (1.0 - mean)).ln();
        Trial {
            allowed: data.boundaries(usize::from(params.nbins)),
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
            base_score,
            trees: Vec::new(),
            train_raw: vec![base_score; data.train.rows],
            valid_raw: vec![base_score; data.valid.rows],
            best_valid_raw: vec![base_score; data.valid.rows],
            best_loss: f64::INFINITY,
            best_iteration: 0,
            stopped: false,
            grad: vec![[0.0; 2]; data.train.rows],
        }
    }

    /// Trees in the model (up to and including the best iteration).
    pub fn best_trees(&self) -> usize {
        if self.trees.is_empty() {
            0
        } else {
            self.best_iteration + 1
        }
    }

    /// Validation raw scores (log-odds) at the best iteration.
    pub fn best_valid_scores(&self) -> &[f64] {
        &self.best_valid_raw
    }

    /// Grows trees until `budget` trees exist or early stopping fires (`stop_after` rounds
    /// without a lower validation log loss). `parallel` builds histograms on the current rayon
    /// pool (same trees either way).
    pub fn advance(&mut self, data: &Binned, budget: usize, stop_after: usize, parallel: bool) {
        let n = data.train.rows;
        let mut index: Vec<u32> = Vec::with_capacity(n);
        let mut excluded: Vec<u32> = Vec::with_capacity(n);
        let mut scratch: Vec<u32> = vec![0; n];
        while !self.stopped && self.trees.len() < budget {
            let i = self.trees.len();
            index.clear();
            excluded.clear();
            if self.params.subsample < 1.0 {
                for r in 0..n as u32 {
                    if self.rng.random::<f64>() < self.params.subsample {
                        index.push(r);
                    } else {
                        excluded.push(r);
                    }
                }
            } else {
                index.extend(0..n as u32);
            }
            // Gradients of the sampled rows only: the others take no part in this tree.
            for &r in &index {
                let r = r as usize;
                let p = sigmoid(self.train_raw[r]);
                self.grad[r] = [p - data.train_y[r], (p * (1.0 - p)).max(1e-16)];
            }
            let features = self.sample_features(data.cols);
            let (nodes, leaves) = self.grow(data, &mut index, &mut scratch, &features, parallel);
            // Sampled rows: their leaf is known from the partition; the others walk the tree.
            for (leaf, start, end) in leaves {
                let w = nodes[leaf].weight;
                for &r in &index[start..end] {
                    self.train_raw[r as usize] += w;
                }
            }
            for &r in &excluded {
                self.train_raw[r as usize] += predict_binned(&nodes, data.train.row(r as usize));
            }
            for (r, v) in self.valid_raw.iter_mut().enumerate() {
                *v += predict_binned(&nodes, data.valid.row(r));
            }
            self.trees.push(nodes);
            let loss = log_loss(&data.valid_y, &self.valid_raw);
            if i == 0 || loss < self.best_loss {
                self.best_loss = loss;
                self.best_iteration = i;
                self.best_valid_raw.copy_from_slice(&self.valid_raw);
            } else if i - self.best_iteration >= stop_after {
                self.stopped = true;
            }
        }
    }

    /// `colsample_bytree` of the features, ascending.
    fn sample_features(&mut self, cols: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..cols).collect();
        let c = self.params.colsample_bytree;
        if c >= 1.0 {
            return all;
        }
        let k = ((cols as f64 * c).round() as usize).clamp(1, cols);
        for j in 0..k {
            let pick = self.rng.random_range(j..cols);
            all.swap(j, pick);
        }
        all.truncate(k);
        all.sort_unstable();
        all
    }

    /// Grows one tree on the rows in `index` (reordered so each leaf's rows are contiguous),
    /// leaf-wise: the open leaf whose best split gains most is split next (ties to the lower
    /// node number), until `max_leaves` leaves exist or no leaf can split. With no leaf cap every
    /// splittable node down to `max_depth` is split, which is depth-wise growth.
    /// Returns the nodes and each leaf's `(node, start, end)` in `index`.
    fn grow(
        &self,
        data: &Binned,
        index: &mut [u32],
        scratch: &mut [u32],
        features: &[usize],
        parallel: bool,
    ) -> (Vec<TNode>, Vec<(usize, usize, usize)>) {
        let p = &self.params;
        let n = data.train.rows;
        let (l2, lr) = (p.l2, p.learning_rate);
        let max_leaves = if p.max_leaves == 0 {
            usize::MAX
        } else {
            p.max_leaves
        };
        // Rounded to f32 as forust stores them, so training scores match the exported model's.
        let weight = |g: f64, h: f64| f64::from((-g / (h + l2) * lr) as f32);
        let (g, h) = index.iter().fold((0.0, 0.0), |(g, h), &r| {
            let [a, b] = self.grad[r as usize];
            (g + a, h + b)
        });
        let mut nodes = vec![TNode {
            weight: weight(g, h),
            hessian: h,
            depth: 0,
            split: None,
        }];
        let mut open = vec![Open {
            node: 0,
            start: 0,
            end: index.len(),
            g,
            h,
            hist: Vec::new(),
            best: None,
        }];
        if p.max_depth > 0 && max_leaves > 1 {
            open[0].hist = build_hist(data, &self.grad, index, parallel);
            open[0].best = self.best_split(data, &open[0], features);
        }
        let mut leaves = 1;
        while leaves < max_leaves {
            // The open leaf with the largest gain; ties to the lower node number.
            let mut pick: Option<usize> = None;
            for (i, o) in open.iter().enumerate() {
                let Some(c) = &o.best else { continue };
                if pick.is_none_or(|j| {
                    let b = open[j].best.as_ref().map_or(f64::NEG_INFINITY, |b| b.gain);
                    c.gain > b || (c.gain == b && o.node < open[j].node)
                }) {
                    pick = Some(i);
                }
            }
            let Some(i) = pick else { break };
            let parent = open.swap_remove(i);
            let Some(c) = parent.best else { break };
            leaves += 1;
            // Stable partition of the node's rows.
            let column = &data.train_cols[c.feature * n..(c.feature + 1) * n];
            let rows = &mut index[parent.start..parent.end];
            let mut nl = 0;
            let mut nr = 0;
            for k in 0..rows.len() {
                let r = rows[k];
                let b = column[r as usize];
                if c.goes_left(b) {
                    rows[nl] = r;
                    nl += 1;
                } else {
                    scratch[nr] = r;
                    nr += 1;
                }
            }
            rows[nl..].copy_from_slice(&scratch[..nr]);
            let mid = parent.start + nl;
            let depth = nodes[parent.node].depth + 1;
            let left = nodes.len();
            let right = left + 1;
            for (gg, hh) in [(c.gl, c.hl), (c.g - c.gl, c.h - c.hl)] {
                nodes.push(TNode {
                    weight: weight(gg, hh),
                    hessian: hh,
                    depth,
                    split: None,
                });
            }
            nodes[parent.node].split = Some(Split {
                feature: c.feature,
                bin: c.bin,
                missing_left: c.missing_left,
                gain: c.gain,
                left,
                right,
            });
            let mut l = Open {
                node: left,
                start: parent.start,
                end: mid,
                g: c.gl,
                h: c.hl,
                hist: Vec::new(),
                best: None,
            };
            let mut r = Open {
                node: right,
                start: mid,
                end: parent.end,
                g: c.g - c.gl,
                h: c.h - c.hl,
                hist: Vec::new(),
                best: None,
            };
            // Children that may split need histograms: build the smaller child's, take the
            // larger's as the parent's minus it. Children that cannot split need none.
            if depth < p.max_depth && leaves < max_leaves {
                let (small, large_is_left) = if nl <= nr {
                    (&index[parent.start..mid], false)
                } else {
                    (&index[mid..parent.end], true)
                };
                let small_hist = build_hist(data, &self.grad, small, parallel);
                let mut large_hist = parent.hist;
                for (l, s) in large_hist.iter_mut().zip(&small_hist) {
                    l[0] -= s[0];
                    l[1] -= s[1];
                }
                let (lh, rh) = if large_is_left {
                    (large_hist, small_hist)
                } else {
                    (small_hist, large_hist)
                };
                l.hist = lh;
                r.hist = rh;
                l.best = self.best_split(data, &l, features);
                r.best = self.best_split(data, &r, features);
            }
            open.push(l);
            open.push(r);
        }
        let leaves = open.iter().map(|o| (o.node, o.start, o.end)).collect();
        (nodes, leaves)
    }

    /// The best allowed split of a node, if any gains more than `gamma`.
    fn best_split(&self, data: &Binned, open: &Open, features: &[usize]) -> Option<Candidate> {
        let p = &self.params;
        let (l2, mlw) = (p.l2, p.min_leaf_weight);
        let gain = |g: f64, h: f64| g * g / (h + l2);
        let parent = gain(open.g, open.h);
        let mut best: Option<Candidate> = None;
        for &f in features {
            let off = data.offsets[f];
            let nb = data.offsets[f + 1] - off;
            let hist = &open.hist[off..off + nb];
            let allowed = &self.allowed[off..off + nb];
            let [gm, hm] = hist[0];
            let (gv, hv) = (open.g - gm, open.h - hm);
            let mut gl = 0.0;
            let mut hl = 0.0;
            // Boundary b: value bins 1..=b left, b+1.. right; b = 0 and b = nb-1 leave all values
            // on one side (a missing/present split).
            for b in 0..nb {
                if b > 0 {
                    gl += hist[b][0];
                    hl += hist[b][1];
                }
                if !allowed[b] {
                    continue;
                }
                let (gr, hr) = (gv - gl, hv - hl);
                // Missing left, then missing right; with no missing rows, the larger side takes
                // them (unseen missing values at prediction time follow most rows).
                for missing_left in [true, false] {
                    let (lg, lh, rg, rh) = if missing_left {
                        (gl + gm, hl + hm, gr, hr)
                    } else {
                        (gl, hl, gr + gm, hr + hm)
                    };
                    if hm == 0.0 && missing_left != (hl >= hr) {
                        continue;
                    }
                    if lh < mlw || rh < mlw || lh <= 0.0 || rh <= 0.0 {
                        continue;
                    }
                    let g = gain(lg, lh) + gain(rg, rh) - parent - p.gamma;
                    if g > 0.0 && best.as_ref().is_none_or(|c| g > c.gain) {
                        best = Some(Candidate {
                            feature: f,
                            bin: b as u8,
                            missing_left,
                            gain: g,
                            g: open.g,
                            h: open.h,
                            gl: lg,
                            hl: lh,
                        });
                    }
                }
            }
        }
        best
    }

    /// The booster as forust-ml trees (`prediction_iteration` = the best iteration + 1; trees
    /// after it are dropped). `template` carries the parameters to record.
    pub fn into_booster(
        self,
        data: &Binned,
        mut template: forust_ml::GradientBooster,
    ) -> Result<forust_ml::GradientBooster, serde_json::Error> {
        let keep = self.best_trees();
        let mut trees = Vec::with_capacity(keep);
        for nodes in &self.trees[..keep] {
            trees.push(to_forust(nodes, &data.cuts)?);
        }
        template.base_score = self.base_score;
        template.trees = trees;
        template.best_iteration = keep.checked_sub(1);
        template.prediction_iteration = Some(keep);
        Ok(template)
    }
}

/// A chosen split with its sums (left side including missing rows when they go left).
struct Candidate {
    feature: usize,
    bin: u8,
    missing_left: bool,
    gain: f64,
    g: f64,
    h: f64,
    gl: f64,
    hl: f64,
}

impl Candidate {
    fn goes_left(&self, b: u8) -> bool {
        if b == 0 {
            self.missing_left
        } else {
            b <= self.bin
        }
    }
}

/// The histogram of `rows` over every feature: chunk partial sums, added in chunk order; each
/// feature's most frequent bin is then the rows' total minus its other bins.
fn build_hist(data: &Binned, grad: &[[f64; 2]], rows: &[u32], parallel: bool) -> Hist {
    let size = *data.offsets.last().unwrap_or(&0);
    let one = |chunk: &[u32]| -> (Hist, [f64; 2]) {
        let mut hist = vec![[0.0; 2]; size];
        let mut total = [0.0; 2];
        for &r in chunk {
            let r = r as usize;
            let [g, h] = grad[r];
            total[0] += g;
            total[1] += h;
            let cells = &data.cells[data.row_ptr[r] as usize..data.row_ptr[r + 1] as usize];
            for &c in cells {
                let cell = &mut hist[usize::from(c)];
                cell[0] += g;
                cell[1] += h;
            }
        }
        (hist, total)
    };
    let (mut hist, total) = if rows.len() <= CHUNK {
        one(rows)
    } else {
        let parts: Vec<(Hist, [f64; 2])> = if parallel {
            rows.par_chunks(CHUNK).map(one).collect()
        } else {
            rows.chunks(CHUNK).map(one).collect()
        };
        let mut parts = parts.into_iter();
        let mut acc = parts
            .next()
            .unwrap_or_else(|| (vec![[0.0; 2]; size], [0.0; 2]));
        for (p, t) in parts {
            for (a, x) in acc.0.iter_mut().zip(&p) {
                a[0] += x[0];
                a[1] += x[1];
            }
            acc.1[0] += t[0];
            acc.1[1] += t[1];
        }
        acc
    };
    for (f, &m) in data.mfb.iter().enumerate() {
        let feature = &mut hist[data.offsets[f]..data.offsets[f + 1]];
        let mut rest = total;
        for (b, cell) in feature.iter().enumerate() {
            if b != usize::from(m) {
                rest[0] -= cell[0];
                rest[1] -= cell[1];
            }
        }
        feature[usize::from(m)] = rest;
    }
    hist
}

/// One tree as a forust-ml `Tree` (built through its serde form: forust's node type is not
/// public). A split at bin boundary `b` becomes `value < cuts[b-1]`; the missing/present splits
/// use the extreme finite values so every present value goes to one side.
fn to_forust(
    nodes: &[TNode],
    cuts: &[Vec<f64>],
) -> Result<forust_ml::tree::Tree, serde_json::Error> {
    let json: Vec<serde_json::Value> = nodes
        .iter()
        .enumerate()
        .map(|(num, n)| {
            let (split_value, split_feature, split_gain, missing, left, right) = match &n.split {
                None => (0.0, 0, 0.0, 0, 0, 0),
                Some(s) => {
                    let c = &cuts[s.feature];
                    let b = usize::from(s.bin);
                    let value = if b == 0 {
                        f64::MIN
                    } else if b > c.len() {
                        f64::MAX
                    } else {
                        c[b - 1]
                    };
                    let missing = if s.missing_left { s.left } else { s.right };
                    (value, s.feature, s.gain, missing, s.left, s.right)
                }
            };
            serde_json::json!({
                "num": num,
                "weight_value": n.weight as f32,
                "hessian_sum": n.hessian as f32,
                "depth": n.depth,
                "split_value": split_value,
                "split_feature": split_feature,
                "split_gain": split_gain as f32,
                "missing_node": missing,
                "left_child": left,
                "right_child": right,
                "is_leaf": n.split.is_none(),
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "nodes": json }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small learnable problem, column-major, with some missing values and a wide numeric
    /// column (more distinct values than bins).
    fn problem(rows: usize, seed: u64) -> (Vec<f64>, Vec<f64>, usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cols = 4;
        let mut x = vec![0.0; rows * cols];
        let mut y = vec![0.0; rows];
        for r in 0..rows {
            let a: f64 = rng.random_range(0.0..1000.0);
            let b = f64::from(rng.random_range(0..5u8));
            let c = if rng.random_bool(0.2) {
                f64::NAN
            } else {
                rng.random_range(-1.0..1.0)
            };
            let d: f64 = rng.random_range(0.0..1.0);
            x[r] = a;
            x[rows + r] = b;
            x[2 * rows + r] = c;
            x[3 * rows + r] = d;
            let logit = (a - 500.0) / 200.0 + 0.5 * b - 1.0 + if c.is_nan() { 1.0 } else { c };
            y[r] = f64::from(u8::from(rng.random::<f64>() < 1.0 / (1.0 + (-logit).exp())));
        }
        (x, y, cols)
    }

    fn binned() -> Binned {
        let (x, y, cols) = problem(3000, 1);
        let (vx, vy, _) = problem(1000, 2);
        Binned::new(&x, &y, &vx, &vy, cols)
    }

    /// Leaf-wise with a binding cap (12 leaves below depth 5's 32).
    fn params() -> TrialParams {
        TrialParams {
            max_depth: 5,
            max_leaves: 12,
            min_leaf_weight: 2.0,
            nbins: 32,
            ..TrialParams::default()
        }
    }

    fn booster_json(t: Trial, data: &Binned) -> String {
        let b = t
            .into_booster(data, params().booster(100, 3))
            .expect("exports");
        b.json_dump().expect("serialises")
    }

    #[test]
    fn bins_send_values_below_the_cut_left_like_forust() {
        let cuts = fit_cuts(&[3.0, 1.0, 2.0, 2.0, f64::NAN]);
        assert_eq!(cuts, vec![2.0, 3.0]);
        assert_eq!(bin_of(&cuts, f64::NAN), 0);
        assert_eq!(bin_of(&cuts, 1.0), 1);
        assert_eq!(bin_of(&cuts, 1.99), 1);
        assert_eq!(bin_of(&cuts, 2.0), 2);
        assert_eq!(bin_of(&cuts, 9.0), 3);
        // "Bins 1..=1 left" is `v < cuts[0]`.
        for v in [0.5, 1.0, 1.99, 2.0, 2.5, 3.0, 4.0] {
            assert_eq!(bin_of(&cuts, v) <= 1, v < cuts[0], "{v}");
        }
        let wide: Vec<f64> = (0..10_000).map(f64::from).collect();
        assert!(fit_cuts(&wide).len() < MAX_VALUE_BINS);
    }

    #[test]
    fn nbins_limits_the_boundaries_a_trial_may_split_at() {
        let data = binned();
        let allowed = data.boundaries(8);
        let wide = &allowed[data.offsets[0]..data.offsets[1]];
        let interior = wide[1..wide.len() - 1].iter().filter(|&&a| a).count();
        assert!((1..=7).contains(&interior), "{interior}");
        // A five-valued feature keeps every boundary.
        let few = &allowed[data.offsets[1]..data.offsets[2]];
        assert!(few.iter().all(|&a| a));
    }

    #[test]
    fn exported_trees_predict_what_training_scored() {
        let data = binned();
        let mut t = Trial::new(&data, params(), 3);
        t.advance(&data, 60, 10, false);
        assert!(t.best_trees() > 5);
        let scores = t.best_valid_scores().to_vec();
        let (vx, vy, cols) = problem(1000, 2);
        let b = t
            .into_booster(&data, params().booster(60, 3))
            .expect("exports");
        let m = forust_ml::Matrix::new(&vx, vy.len(), cols);
        let forust = b.predict(&m, false);
        for (a, b) in scores.iter().zip(&forust) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        let auc = crate::model::metrics::roc_auc(
            &vy.iter().map(|&y| y > 0.5).collect::<Vec<_>>(),
            &forust,
        );
        assert!(auc > 0.75, "{auc}");
    }

    #[test]
    fn continuing_a_trial_grows_the_same_trees_as_one_longer_fit() {
        let data = binned();
        let mut once = Trial::new(&data, params(), 5);
        once.advance(&data, 80, 1000, false);
        let mut twice = Trial::new(&data, params(), 5);
        twice.advance(&data, 20, 1000, false);
        twice.advance(&data, 80, 1000, false);
        assert_eq!(booster_json(once, &data), booster_json(twice, &data));
    }

    #[test]
    fn trees_do_not_depend_on_the_thread_count() {
        let (x, y, cols) = problem(3 * CHUNK, 4);
        let (vx, vy, _) = problem(500, 5);
        let data = Binned::new(&x, &y, &vx, &vy, cols);
        let mut serial = Trial::new(&data, params(), 9);
        serial.advance(&data, 15, 1000, false);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let mut parallel = Trial::new(&data, params(), 9);
        pool.install(|| parallel.advance(&data, 15, 1000, true));
        assert_eq!(booster_json(serial, &data), booster_json(parallel, &data));
    }

    #[test]
    fn leaf_wise_growth_respects_the_cap_and_without_one_grows_depth_wise() {
        let data = binned();
        let mut capped = Trial::new(&data, params(), 2);
        capped.advance(&data, 10, 1000, false);
        for nodes in &capped.trees {
            let leaves = nodes.iter().filter(|n| n.split.is_none()).count();
            assert!(leaves <= 12, "{leaves} leaves");
            assert!(nodes.iter().all(|n| n.depth <= 5));
        }
        assert!(capped.trees.iter().any(|t| t.len() == 2 * 12 - 1));
        // A cap of 2^depth never binds: every splittable node down to the depth is split, the
        // same tree as no cap (node numbering aside), so the same predictions.
        let fit = |max_leaves| {
            let p = TrialParams {
                max_depth: 3,
                max_leaves,
                ..params()
            };
            let mut t = Trial::new(&data, p, 2);
            t.advance(&data, 10, 1000, false);
            t.best_valid_scores().to_vec()
        };
        assert_eq!(fit(8), fit(0));
    }

    #[test]
    fn histograms_recover_the_most_frequent_bins_exactly_enough() {
        let data = binned();
        let grad: Vec<[f64; 2]> = (0..data.train.rows)
            .map(|r| [(r % 7) as f64 - 3.0, 0.25 + (r % 3) as f64])
            .collect();
        let rows: Vec<u32> = (0..data.train.rows as u32).step_by(3).collect();
        let hist = build_hist(&data, &grad, &rows, false);
        // Direct sums over every cell.
        let mut direct = vec![[0.0f64; 2]; hist.len()];
        for &r in &rows {
            for (f, &b) in data.train.row(r as usize).iter().enumerate() {
                let c = &mut direct[data.offsets[f] + usize::from(b)];
                c[0] += grad[r as usize][0];
                c[1] += grad[r as usize][1];
            }
        }
        for (a, b) in hist.iter().zip(&direct) {
            assert!(
                (a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn early_stopping_keeps_the_best_iteration() {
        let data = binned();
        let p = TrialParams {
            learning_rate: 0.9,
            ..params()
        };
        let mut t = Trial::new(&data, p, 1);
        t.advance(&data, 1000, 5, false);
        assert!(t.stopped);
        assert_eq!(t.trees.len(), t.best_trees() + 5);
    }
}
