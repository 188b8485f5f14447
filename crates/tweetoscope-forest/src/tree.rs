//! CART regression trees: variance-reduction splits, flat node storage.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Training data in column-major layout (`cols[f * n + i]` is feature `f` of
/// sample `i`), already checked to be finite.
#[derive(Debug, Clone)]
pub(crate) struct TrainData {
    cols: Vec<f64>,
    y: Vec<f64>,
    n: usize,
    p: usize,
    /// For every feature, the samples in increasing order of it (ties by index):
    /// `rows_by_value[f * n..][k]`. Sorted once for all the trees of a forest.
    rows_by_value: Vec<u32>,
}

impl TrainData {
    /// Wraps column-major features and targets; `cols.len()` must be `n * p`.
    pub(crate) fn new(cols: Vec<f64>, y: Vec<f64>, p: usize) -> Self {
        let n = y.len();
        debug_assert_eq!(cols.len(), n * p);
        let rows = u32::try_from(n).expect("at most u32::MAX training samples");
        let mut rows_by_value = Vec::with_capacity(n * p);
        for f in 0..p {
            let column = &cols[f * n..(f + 1) * n];
            let first = rows_by_value.len();
            rows_by_value.extend(0..rows);
            // Stable: ties stay in index order.
            rows_by_value[first..]
                .sort_by(|&a: &u32, &b: &u32| column[a as usize].total_cmp(&column[b as usize]));
        }
        TrainData {
            cols,
            y,
            n,
            p,
            rows_by_value,
        }
    }

    /// Number of samples.
    pub(crate) fn n_samples(&self) -> usize {
        self.n
    }

    /// Number of features.
    pub(crate) fn n_features(&self) -> usize {
        self.p
    }

    /// Feature `f` of sample `i`.
    #[inline]
    pub(crate) fn x(&self, i: usize, f: usize) -> f64 {
        self.cols[f * self.n + i]
    }

    /// Target of sample `i`.
    #[inline]
    pub(crate) fn y(&self, i: usize) -> f64 {
        self.y[i]
    }
}

/// Per-tree growth limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeConfig {
    pub(crate) max_depth: usize,
    pub(crate) min_samples_leaf: usize,
    /// Number of non-constant features to evaluate per node (`1..=p`).
    pub(crate) max_features: usize,
}

/// One node. `left == 0` marks a leaf whose prediction is `value`; otherwise
/// samples with `x[feature] <= value` go to `left`, the others to `left + 1`.
/// The root is node 0 and children always come after their parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Node {
    feature: usize,
    left: usize,
    value: f64,
}

impl Node {
    fn leaf(value: f64) -> Self {
        Node {
            feature: 0,
            left: 0,
            value,
        }
    }

    fn is_leaf(&self) -> bool {
        self.left == 0
    }
}

/// A regression tree stored as a flat vector of nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "TreeWire", try_from = "TreeWire")]
pub(crate) struct Tree {
    nodes: Vec<Node>,
}

/// Compact serialized form: three parallel arrays (feature, left child,
/// threshold-or-leaf-value).
#[derive(Serialize, Deserialize)]
struct TreeWire {
    f: Vec<usize>,
    l: Vec<usize>,
    v: Vec<f64>,
}

impl From<Tree> for TreeWire {
    fn from(t: Tree) -> Self {
        TreeWire {
            f: t.nodes.iter().map(|n| n.feature).collect(),
            l: t.nodes.iter().map(|n| n.left).collect(),
            v: t.nodes.iter().map(|n| n.value).collect(),
        }
    }
}

impl TryFrom<TreeWire> for Tree {
    type Error = String;

    fn try_from(w: TreeWire) -> Result<Self, String> {
        if w.f.len() != w.l.len() || w.f.len() != w.v.len() {
            return Err(format!(
                "tree arrays have different lengths ({}, {}, {})",
                w.f.len(),
                w.l.len(),
                w.v.len()
            ));
        }
        let nodes =
            w.f.into_iter()
                .zip(w.l)
                .zip(w.v)
                .map(|((feature, left), value)| Node {
                    feature,
                    left,
                    value,
                })
                .collect();
        Ok(Tree { nodes })
    }
}

impl Tree {
    /// Number of nodes (splits and leaves).
    pub(crate) fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Index of the leaf reached by a sample whose feature `f` is `get(f)`.
    #[inline]
    pub(crate) fn leaf_of(&self, get: impl Fn(usize) -> f64) -> usize {
        let mut i = 0;
        loop {
            let node = &self.nodes[i];
            if node.is_leaf() {
                return i;
            }
            i = if get(node.feature) <= node.value {
                node.left
            } else {
                node.left + 1
            };
        }
    }

    /// Prediction for a sample whose feature `f` is `get(f)`.
    #[inline]
    pub(crate) fn predict_by(&self, get: impl Fn(usize) -> f64) -> f64 {
        self.nodes[self.leaf_of(get)].value
    }

    /// Prediction for a row of features (length already checked).
    #[inline]
    pub(crate) fn predict(&self, x: &[f64]) -> f64 {
        self.predict_by(|f| x[f])
    }

    /// Checks that the tree can be traversed safely with `n_features` inputs:
    /// children in range and after their parent, finite values.
    pub(crate) fn validate(&self, n_features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("empty tree".to_owned());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.value.is_finite() {
                return Err(format!("node {i} has a non-finite value"));
            }
            if node.is_leaf() {
                continue;
            }
            if node.left <= i || node.left + 1 >= self.nodes.len() {
                return Err(format!("node {i} has out-of-order children {}", node.left));
            }
            if node.feature >= n_features {
                return Err(format!(
                    "node {i} splits on feature {} but the model has {n_features}",
                    node.feature
                ));
            }
        }
        Ok(())
    }
}

/// Mean computed as `y0 + Σ(y - y0) / n`: exact for constant inputs and
/// robust to large offsets.
pub(crate) fn stable_mean(mut values: impl Iterator<Item = f64>) -> Option<f64> {
    let first = values.next()?;
    let mut n = 1usize;
    let mut acc = 0.0;
    for v in values {
        acc += v - first;
        n += 1;
    }
    Some(first + acc / n as f64)
}

/// Threshold strictly separating `a < b`: their midpoint, or `a` when the
/// midpoint rounds onto `b` (adjacent floats). Rule: `x <= t` goes left.
fn midpoint(a: f64, b: f64) -> f64 {
    let t = a * 0.5 + b * 0.5;
    if t >= a && t < b {
        t
    } else {
        a
    }
}

/// Best split found at a node.
struct Split {
    feature: usize,
    threshold: f64,
}

/// The bootstrap sample of one tree, presorted: the samples' feature values and targets by
/// position, and for every feature the positions in increasing order of that feature. A node
/// owns the same range `start..end` of every feature's order, which holds its samples sorted by
/// that feature, so a split search reads sorted values instead of sorting them, and a split
/// stably partitions each range in linear time (the classic presorted CART: the same splits as
/// sorting at every node, about four times faster with every feature tried at each node).
struct Presorted {
    /// Samples of the bootstrap (positions).
    m: usize,
    /// Features.
    p: usize,
    /// Feature values, column-major: `xs[f * m + pos]`.
    xs: Vec<f64>,
    /// Targets by position.
    ys: Vec<f64>,
    /// For every feature, positions sorted by that feature within every node's range:
    /// `order[f * m ..][start..end]`.
    order: Vec<u32>,
}

impl Presorted {
    fn new(data: &TrainData, samples: &[usize]) -> Self {
        let m = samples.len();
        let p = data.n_features();
        let xs: Vec<f64> = (0..p)
            .flat_map(|f| samples.iter().map(move |&i| data.x(i, f)))
            .collect();
        let ys = samples.iter().map(|&i| data.y(i)).collect();
        // The positions of every sample's copies, grouped by sample (a counting sort), so that
        // each feature's order follows from the data's presorted rows in linear time.
        let n = data.n_samples();
        let mut first_copy = vec![0u32; n + 1];
        for &i in samples {
            first_copy[i + 1] += 1;
        }
        for i in 0..n {
            first_copy[i + 1] += first_copy[i];
        }
        let mut filled = first_copy.clone();
        let mut copies = vec![0u32; m];
        for (pos, &i) in samples.iter().enumerate() {
            copies[filled[i] as usize] = u32::try_from(pos).expect("at most u32::MAX positions");
            filled[i] += 1;
        }
        let mut order = Vec::with_capacity(p * m);
        for f in 0..p {
            for &row in &data.rows_by_value[f * n..(f + 1) * n] {
                let row = row as usize;
                order.extend_from_slice(
                    &copies[first_copy[row] as usize..first_copy[row + 1] as usize],
                );
            }
        }
        Presorted {
            m,
            p,
            xs,
            ys,
            order,
        }
    }

    /// Positions of a node's samples in increasing order of `feature`.
    fn sorted(&self, feature: usize, start: usize, end: usize) -> &[u32] {
        &self.order[feature * self.m + start..feature * self.m + end]
    }

    /// Feature `f` of the sample at `pos`.
    #[inline]
    fn x(&self, pos: u32, f: usize) -> f64 {
        self.xs[f * self.m + pos as usize]
    }

    /// Sends the node's samples with `feature <= threshold` to the front of its range in every
    /// feature's order, keeping each side sorted; returns how many went left.
    fn split(
        &mut self,
        start: usize,
        end: usize,
        split: &Split,
        goes_left: &mut [bool],
        right: &mut Vec<u32>,
    ) -> usize {
        let mut n_left = 0;
        for &pos in self.sorted(split.feature, start, end) {
            let left = self.x(pos, split.feature) <= split.threshold;
            goes_left[pos as usize] = left;
            n_left += usize::from(left);
        }
        for f in 0..self.p {
            let range = &mut self.order[f * self.m + start..f * self.m + end];
            right.clear();
            let mut k = 0;
            for j in 0..range.len() {
                let pos = range[j];
                if goes_left[pos as usize] {
                    range[k] = pos;
                    k += 1;
                } else {
                    right.push(pos);
                }
            }
            range[k..].copy_from_slice(right);
        }
        n_left
    }
}

/// Grows one tree on the (bootstrap) sample indices `samples`; duplicates
/// count as separate samples.
pub(crate) fn build_tree(
    data: &TrainData,
    samples: &[usize],
    cfg: &TreeConfig,
    rng: &mut impl Rng,
) -> Tree {
    let mut nodes = vec![Node::leaf(0.0)];
    let mut sorted = Presorted::new(data, samples);
    // Feature indices, partially shuffled when drawing feature subsets.
    let mut features: Vec<usize> = (0..data.n_features()).collect();
    let mut goes_left = vec![false; samples.len()];
    let mut right = Vec::with_capacity(samples.len());
    // (node index, start, end, depth) of nodes still to grow.
    let mut stack = vec![(0usize, 0usize, samples.len(), 0usize)];
    while let Some((node, start, end, depth)) = stack.pop() {
        let positions = if data.n_features() > 0 {
            sorted.sorted(0, start, end)
        } else {
            &[]
        };
        let mean = stable_mean(positions.iter().map(|&pos| sorted.ys[pos as usize])).unwrap_or(0.0);
        nodes[node] = Node::leaf(mean);
        if depth >= cfg.max_depth || end - start < 2 * cfg.min_samples_leaf {
            continue;
        }
        let Some(split) = best_split(&sorted, start, end, mean, cfg, &mut features, rng) else {
            continue;
        };
        let n_left = sorted.split(start, end, &split, &mut goes_left, &mut right);
        let left = nodes.len();
        nodes.push(Node::leaf(0.0));
        nodes.push(Node::leaf(0.0));
        nodes[node] = Node {
            feature: split.feature,
            left,
            value: split.threshold,
        };
        stack.push((left + 1, start + n_left, end, depth + 1));
        stack.push((left, start, start + n_left, depth + 1));
    }
    Tree { nodes }
}

/// Searches the split maximizing the reduction of the sum of squared errors
/// over up to `cfg.max_features` randomly drawn non-constant features of the node holding the
/// range `start..end` of `sorted`.
fn best_split(
    sorted: &Presorted,
    start: usize,
    end: usize,
    mean: f64,
    cfg: &TreeConfig,
    features: &mut [usize],
    rng: &mut impl Rng,
) -> Option<Split> {
    let n = end - start;
    let p = features.len();
    if n == 0 || p == 0 {
        return None;
    }
    let sse: f64 = sorted
        .sorted(0, start, end)
        .iter()
        .map(|&pos| (sorted.ys[pos as usize] - mean).powi(2))
        .sum();
    if sse.is_nan() || sse <= 0.0 {
        return None;
    }
    let subsample = cfg.max_features < p;
    // Ignore gains that are pure rounding noise.
    let mut best_gain = sse * 1e-12;
    let mut best = None;
    let mut evaluated = 0;
    for j in 0..p {
        if evaluated == cfg.max_features {
            break;
        }
        if subsample {
            // Incremental Fisher–Yates: features[..=j] is a uniform random draw.
            let r = rng.gen_range(j..p);
            features.swap(j, r);
        }
        let feature = features[j];
        let order = sorted.sorted(feature, start, end);
        let value = |k: usize| sorted.x(order[k], feature);
        let residual = |k: usize| sorted.ys[order[k] as usize] - mean;
        if value(0) == value(n - 1) {
            // Constant in this node: does not count towards max_features.
            continue;
        }
        evaluated += 1;
        let total: f64 = (0..n).map(residual).sum();
        let base = total * total / n as f64;
        let mut left_sum = 0.0;
        for pos in 1..n {
            left_sum += residual(pos - 1);
            if n - pos < cfg.min_samples_leaf {
                break;
            }
            if pos < cfg.min_samples_leaf || value(pos - 1) == value(pos) {
                continue;
            }
            let right_sum = total - left_sum;
            let gain =
                left_sum * left_sum / pos as f64 + right_sum * right_sum / (n - pos) as f64 - base;
            if gain > best_gain {
                best_gain = gain;
                best = Some(Split {
                    feature,
                    threshold: midpoint(value(pos - 1), value(pos)),
                });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Column-major data from rows.
    fn data(rows: &[Vec<f64>], y: &[f64]) -> TrainData {
        let p = rows[0].len();
        let n = rows.len();
        let mut cols = vec![0.0; n * p];
        for (i, r) in rows.iter().enumerate() {
            for (f, &v) in r.iter().enumerate() {
                cols[f * n + i] = v;
            }
        }
        TrainData::new(cols, y.to_vec(), p)
    }

    fn random_data(n: usize, seed: u64) -> TrainData {
        let mut rng = SplitMix64::new(seed);
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..3).map(|_| rng.gen_range(-2.0..2.0)).collect())
            .collect();
        let y: Vec<f64> = rows
            .iter()
            .map(|r| r[0].sin() * 3.0 + r[1] * r[1] + rng.gen_range(-0.3..0.3))
            .collect();
        data(&rows, &y)
    }

    #[test]
    fn midpoint_separates_adjacent_floats() {
        assert_eq!(midpoint(1.0, 3.0), 2.0);
        let a = 1.0f64;
        let b = f64::from_bits(a.to_bits() + 1);
        let t = midpoint(a, b);
        assert!(a <= t && t < b);
        let t = midpoint(-0.5, 0.0);
        assert!((-0.5..0.0).contains(&t));
    }

    #[test]
    fn stable_mean_is_exact_for_constants() {
        let v = [0.1f64; 1000];
        assert_eq!(stable_mean(v.iter().copied()), Some(0.1));
        assert_eq!(stable_mean(std::iter::empty()), None);
        assert_eq!(stable_mean([1.0, 2.0, 6.0].into_iter()), Some(3.0));
    }

    #[test]
    fn perfect_step_is_found_by_a_stump() {
        let rows: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64, 0.0]).collect();
        let y: Vec<f64> = (0..10).map(|i| if i < 4 { 1.0 } else { 5.0 }).collect();
        let d = data(&rows, &y);
        let cfg = TreeConfig {
            max_depth: 1,
            min_samples_leaf: 1,
            max_features: 2,
        };
        let samples: Vec<usize> = (0..10).collect();
        let tree = build_tree(&d, &samples, &cfg, &mut SplitMix64::new(0));
        assert_eq!(tree.n_nodes(), 3);
        assert_eq!(tree.nodes[0].feature, 0);
        assert_eq!(tree.nodes[0].value, 3.5);
        assert_eq!(tree.predict(&[3.0, 0.0]), 1.0);
        assert_eq!(tree.predict(&[4.0, 0.0]), 5.0);
    }

    /// The straightforward CART this module replaced: the node's (value, residual) pairs sorted
    /// at every node, for every feature tried. The reference of the presorted builder.
    fn tree_sorting_at_every_node(
        data: &TrainData,
        samples: &[usize],
        cfg: &TreeConfig,
        rng: &mut impl Rng,
    ) -> Tree {
        let mut idx = samples.to_vec();
        let mut features: Vec<usize> = (0..data.n_features()).collect();
        let mut nodes = vec![Node::leaf(0.0)];
        let mut stack = vec![(0usize, 0usize, idx.len(), 0usize)];
        while let Some((node, start, end, depth)) = stack.pop() {
            let idx = &mut idx[start..end];
            let mean = stable_mean(idx.iter().map(|&i| data.y(i))).unwrap_or(0.0);
            nodes[node] = Node::leaf(mean);
            if depth >= cfg.max_depth || idx.len() < 2 * cfg.min_samples_leaf {
                continue;
            }
            let n = idx.len();
            let sse: f64 = idx.iter().map(|&i| (data.y(i) - mean).powi(2)).sum();
            if sse <= 0.0 {
                continue;
            }
            let p = features.len();
            let (mut best_gain, mut best) = (sse * 1e-12, None);
            let mut evaluated = 0;
            for j in 0..p {
                if evaluated == cfg.max_features {
                    break;
                }
                if cfg.max_features < p {
                    let r = rng.gen_range(j..p);
                    features.swap(j, r);
                }
                let feature = features[j];
                let mut pairs: Vec<(f64, f64)> = idx
                    .iter()
                    .map(|&i| (data.x(i, feature), data.y(i) - mean))
                    .collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                if pairs[0].0 == pairs[n - 1].0 {
                    continue;
                }
                evaluated += 1;
                let total: f64 = pairs.iter().map(|&(_, r)| r).sum();
                let mut left_sum = 0.0;
                for pos in 1..n {
                    left_sum += pairs[pos - 1].1;
                    if n - pos < cfg.min_samples_leaf {
                        break;
                    }
                    if pos < cfg.min_samples_leaf || pairs[pos - 1].0 == pairs[pos].0 {
                        continue;
                    }
                    let right_sum = total - left_sum;
                    let gain = left_sum * left_sum / pos as f64
                        + right_sum * right_sum / (n - pos) as f64
                        - total * total / n as f64;
                    if gain > best_gain {
                        best_gain = gain;
                        best = Some((feature, midpoint(pairs[pos - 1].0, pairs[pos].0)));
                    }
                }
            }
            let Some((feature, threshold)) = best else {
                continue;
            };
            let mut k = 0;
            for j in 0..n {
                if data.x(idx[j], feature) <= threshold {
                    idx.swap(k, j);
                    k += 1;
                }
            }
            let left = nodes.len();
            nodes.push(Node::leaf(0.0));
            nodes.push(Node::leaf(0.0));
            nodes[node] = Node {
                feature,
                left,
                value: threshold,
            };
            stack.push((left + 1, start + k, end, depth + 1));
            stack.push((left, start, start + k, depth + 1));
        }
        Tree { nodes }
    }

    #[test]
    fn the_presorted_builder_grows_the_tree_that_sorting_at_every_node_grows() {
        let mut identical = 0;
        for seed in 0..20u64 {
            let d = random_data(500, seed);
            let cfg = TreeConfig {
                max_depth: 8,
                min_samples_leaf: 1 + (seed as usize % 10),
                max_features: 1 + (seed as usize % 3),
            };
            let mut draw = SplitMix64::new(seed);
            let samples: Vec<usize> = (0..500).map(|_| draw.gen_range(0..500)).collect();
            let presorted = build_tree(&d, &samples, &cfg, &mut SplitMix64::new(seed + 100));
            let reference =
                tree_sorting_at_every_node(&d, &samples, &cfg, &mut SplitMix64::new(seed + 100));
            assert_eq!(presorted.n_nodes(), reference.n_nodes(), "seed {seed}");
            assert!(presorted.n_nodes() > 15, "seed {seed}: the trees split");
            // Where two features split a small node into the same two sets, their gains are
            // equal and rounding (the means are summed in another order) picks one: the trees
            // may then differ in that node, never in what they make of the training samples.
            for &i in &samples {
                let (a, b) = (
                    presorted.predict_by(|f| d.x(i, f)),
                    reference.predict_by(|f| d.x(i, f)),
                );
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "seed {seed}");
            }
            let same = presorted.nodes.iter().zip(&reference.nodes).all(|(a, b)| {
                (a.feature, a.left) == (b.feature, b.left)
                    && (a.value - b.value).abs() <= 1e-12 * b.value.abs().max(1.0)
            });
            identical += usize::from(same);
        }
        assert!(identical >= 15, "{identical} of 20 trees node for node");
    }

    #[test]
    fn leaves_hold_at_least_min_samples_leaf() {
        let d = random_data(300, 11);
        for &leaf in &[1usize, 3, 7, 20] {
            let cfg = TreeConfig {
                max_depth: 30,
                min_samples_leaf: leaf,
                max_features: 2,
            };
            let mut rng = SplitMix64::new(leaf as u64);
            // Bootstrap with duplicates, as in the forest.
            let samples: Vec<usize> = (0..300).map(|_| rng.gen_range(0..300)).collect();
            let tree = build_tree(&d, &samples, &cfg, &mut rng);
            assert!(tree.n_nodes() > 1, "tree should split (leaf = {leaf})");
            let mut counts = vec![0usize; tree.n_nodes()];
            for &i in &samples {
                counts[tree.leaf_of(|f| d.x(i, f))] += 1;
            }
            for (k, node) in tree.nodes.iter().enumerate() {
                if node.is_leaf() {
                    assert!(
                        counts[k] >= leaf,
                        "leaf {k} has {} samples < {leaf}",
                        counts[k]
                    );
                }
            }
            // With leaf = 1 and unlimited depth the tree fits the bootstrap exactly
            // wherever feature values are distinct.
            if leaf == 1 {
                for &i in &samples {
                    assert_eq!(tree.predict_by(|f| d.x(i, f)), d.y(i));
                }
            }
        }
    }

    #[test]
    fn max_depth_bounds_the_tree() {
        let d = random_data(400, 5);
        for depth in 1..6 {
            let cfg = TreeConfig {
                max_depth: depth,
                min_samples_leaf: 1,
                max_features: 3,
            };
            let samples: Vec<usize> = (0..400).collect();
            let tree = build_tree(&d, &samples, &cfg, &mut SplitMix64::new(0));
            // Children come after parents, so depths can be filled in one pass.
            let mut depths = vec![0usize; tree.n_nodes()];
            for (i, node) in tree.nodes.iter().enumerate() {
                if !node.is_leaf() {
                    depths[node.left] = depths[i] + 1;
                    depths[node.left + 1] = depths[i] + 1;
                }
            }
            assert_eq!(depths.iter().copied().max(), Some(depth));
            assert!(tree.n_nodes() < 1 << (depth + 1));
        }
    }

    #[test]
    fn validate_rejects_broken_trees() {
        let ok = Tree {
            nodes: vec![
                Node {
                    feature: 1,
                    left: 1,
                    value: 0.5,
                },
                Node::leaf(1.0),
                Node::leaf(2.0),
            ],
        };
        assert!(ok.validate(2).is_ok());
        assert!(ok.validate(1).is_err());
        let mut cyclic = ok.clone();
        cyclic.nodes[0].left = 0;
        cyclic.nodes[1] = Node {
            feature: 0,
            left: 1,
            value: 0.0,
        };
        assert!(cyclic.validate(2).is_err());
        let mut out_of_range = ok.clone();
        out_of_range.nodes[0].left = 2;
        assert!(out_of_range.validate(2).is_err());
        let mut nan = ok;
        nan.nodes[2].value = f64::NAN;
        assert!(nan.validate(2).is_err());
        assert!(Tree { nodes: vec![] }.validate(2).is_err());
    }
}
