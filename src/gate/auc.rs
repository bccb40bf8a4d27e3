//! ROC AUC with optional integer row weights, over scores sorted once: a bootstrap resample is a
//! weight vector, so each resample costs one linear pass instead of a sort.

/// Scores in ascending order, with tie groups marked.
#[derive(Debug, Clone)]
pub struct Ranked {
    order: Vec<u32>,
    /// `group_start[k]` is true where a new distinct score begins in `order`.
    group_start: Vec<bool>,
}

impl Ranked {
    /// Sorts finite scores once.
    pub fn new(scores: &[f64]) -> Ranked {
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
        let group_start = order
            .iter()
            .enumerate()
            .map(|(k, &i)| k == 0 || scores[order[k - 1] as usize] != scores[i as usize])
            .collect();
        Ranked { order, group_start }
    }
}

/// The probability that a random positive row scores above a random negative one (ties count
/// half), each row counted `weights[i]` times (once without weights). `None` without both
/// classes.
pub fn auc(ranked: &Ranked, labels: &[bool], weights: Option<&[u32]>) -> Option<f64> {
    let w = |i: usize| weights.map_or(1.0, |w| f64::from(w[i]));
    let mut neg_below = 0.0;
    let mut total_pos = 0.0;
    let mut sum = 0.0;
    let (mut gp, mut gn) = (0.0, 0.0);
    for (k, &i) in ranked.order.iter().enumerate() {
        if ranked.group_start[k] && k > 0 {
            sum += gp * (neg_below + 0.5 * gn);
            neg_below += gn;
            total_pos += gp;
            gp = 0.0;
            gn = 0.0;
        }
        let i = i as usize;
        if labels[i] {
            gp += w(i);
        } else {
            gn += w(i);
        }
    }
    sum += gp * (neg_below + 0.5 * gn);
    neg_below += gn;
    total_pos += gp;
    if total_pos == 0.0 || neg_below == 0.0 {
        return None;
    }
    Some(sum / (total_pos * neg_below))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, pair by pair.
    fn brute(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] && !labels[j] {
                    den += 1.0;
                    num += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn matches_the_pairwise_definition_with_ties() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.1, 0.5];
        let labels = [false, true, false, true, false, true, true, false, false];
        let got = auc(&Ranked::new(&scores), &labels, None).unwrap();
        assert!((got - brute(&scores, &labels)).abs() < 1e-12, "{got}");
    }

    #[test]
    fn weights_equal_repeated_rows() {
        let scores = [0.2, 0.7, 0.5, 0.5, 0.9];
        let labels = [false, true, true, false, false];
        let weights = [2u32, 0, 3, 1, 1];
        let mut rep_s = Vec::new();
        let mut rep_l = Vec::new();
        for i in 0..scores.len() {
            for _ in 0..weights[i] {
                rep_s.push(scores[i]);
                rep_l.push(labels[i]);
            }
        }
        let w = auc(&Ranked::new(&scores), &labels, Some(&weights)).unwrap();
        assert!((w - brute(&rep_s, &rep_l)).abs() < 1e-12);
    }

    #[test]
    fn agrees_with_the_model_modules_auc() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let labels: Vec<bool> = (0..5000).map(|_| rng.random_bool(0.35)).collect();
        // Rounded scores make many ties.
        let scores: Vec<f64> = labels
            .iter()
            .map(|&l| ((if l { 0.2 } else { 0.0 } + rng.random::<f64>()) * 50.0).round() / 50.0)
            .collect();
        let ours = auc(&Ranked::new(&scores), &labels, None).unwrap();
        let theirs = crate::model::metrics::roc_auc(&labels, &scores);
        assert!((ours - theirs).abs() < 1e-12, "{ours} vs {theirs}");
    }

    #[test]
    fn one_class_has_no_auc() {
        assert_eq!(auc(&Ranked::new(&[0.1, 0.2]), &[true, true], None), None);
        assert_eq!(
            auc(&Ranked::new(&[0.1, 0.2]), &[true, false], Some(&[1, 0])),
            None
        );
    }
}
