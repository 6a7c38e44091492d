//! The decoder's self-attention with its key/value cache held in the plan's state.
//!
//! The exported decoder takes `past_key_i`/`past_value_i` and returns `present_*` = the past with
//! the new position appended. Run as is, every decode step copies the whole cache twice (the
//! Concat, then the packing of the attention products) and computes QKᵀ with the one query row
//! padded to a 64-row matrix tile. [`keep_kv_cache_in_state`] replaces, in each layer,
//! `Concat(past_k, k) → QKᵀ → ×scale → +mask → softmax → ·Concat(past_v, v)` by one
//! [`CachedAttention`] node whose state appends the new keys and values to growing buffers:
//! a single-position step reads the cache in place (one pass over K and V per layer), and a
//! longer chunk (prefill) runs the original products, optimised by tract, on the whole cache.

use std::sync::Arc;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};
use tract_onnx::tract_core::ops::source::TypedSource;
use tract_onnx::tract_core::{as_op, not_out_of_plan, op_as_typed_op};

/// Where each output axis of the attention comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutAxis {
    Batch,
    Head,
    Query,
    Dim,
}

/// One layer's attention, found in the decluttered graph.
struct Found {
    past_key: usize,
    past_value: usize,
    key_concat: OutletId,
    value_concat: OutletId,
    query: OutletId,
    key: OutletId,
    value: OutletId,
    mask: OutletId,
    /// tract keeps only the last query row of the last layer (the logits need no other).
    query_slice: Option<Slice>,
    /// The slice applies to the mask too (its query axis is not broadcast).
    slice_mask: bool,
    attention: OutletId,
    op: CachedAttention,
}

/// Moves every layer's KV cache into plan state when every layer has the pattern; otherwise
/// leaves the graph as it is and returns `false` (the cache then travels as explicit tensors).
pub(super) fn keep_kv_cache_in_state(model: &mut TypedModel, layers: usize) -> TractResult<bool> {
    let mut found = Vec::new();
    for node in model.nodes() {
        if let Some(f) = find_attention(model, node.id)? {
            found.push(f);
        }
    }
    if layers == 0 || found.len() != layers {
        return Ok(false);
    }
    for f in &found {
        let mut patch = TypedModelPatch::default();
        let mut taps = patch.taps(model, &[f.query, f.key, f.value, f.mask])?;
        let name = format!("{}.cached_attention", model.node(f.attention.node).name);
        if let Some(slice) = &f.query_slice {
            taps[0] = patch.wire_node(format!("{name}.query_rows"), slice.clone(), &[taps[0]])?[0];
            if f.slice_mask {
                taps[3] =
                    patch.wire_node(format!("{name}.mask_rows"), slice.clone(), &[taps[3]])?[0];
            }
        }
        let wired = patch.wire_node(name, f.op.clone(), &taps)?;
        patch.shunt_outside(model, f.attention, wired[0])?;
        patch.apply(model)?;
    }
    let pasts: Vec<usize> = found
        .iter()
        .flat_map(|f| [f.past_key, f.past_value])
        .collect();
    let presents: Vec<OutletId> = found
        .iter()
        .flat_map(|f| [f.key_concat, f.value_concat])
        .collect();
    model.inputs.retain(|o| !pasts.contains(&o.node));
    model.outputs.retain(|o| !presents.contains(o));
    for p in &presents {
        model.outlet_labels.remove(p);
    }
    model.compact()?;
    Ok(true)
}

/// `Concat(axis 2)` of a graph input (the past) and a new tensor, feeding `consumer` and a
/// model output only: (past source node, new outlet).
fn cache_concat(
    model: &TypedModel,
    concat: OutletId,
    consumer: usize,
) -> TractResult<Option<(usize, OutletId)>> {
    let node = model.node(concat.node);
    let Some(op) = node.op_as::<TypedConcat>() else {
        return Ok(None);
    };
    if op.axis != 2 || node.inputs.len() != 2 || !model.outputs.contains(&concat) {
        return Ok(None);
    }
    let past = node.inputs[0];
    let past_node = model.node(past.node);
    if !past_node.op_is::<TypedSource>()
        || !model.inputs.contains(&past)
        || model.outlet_successors(past).len() != 1
    {
        return Ok(None);
    }
    if model
        .outlet_successors(concat)
        .iter()
        .any(|s| s.node != consumer)
    {
        return Ok(None);
    }
    Ok(Some((past.node, node.inputs[1])))
}

fn only_successor(model: &TypedModel, outlet: OutletId) -> Option<usize> {
    match model.outlet_successors(outlet) {
        [one] if !model.outputs.contains(&outlet) => Some(one.node),
        _ => None,
    }
}

fn bin_op_named<'m>(model: &'m TypedModel, node: usize, name: &str) -> Option<&'m TypedNode> {
    let n = model.node(node);
    let op = n.op_as::<TypedBinOp>()?;
    (op.0.name() == name && n.inputs.len() == 2).then_some(n)
}

/// Splits an einsum expression `x,y->z` into its three axis strings.
fn einsum_parts(op: &EinSum) -> Option<(Vec<char>, Vec<char>, Vec<char>)> {
    let expr = op.axes.to_string();
    let (ins, out) = expr.split_once("->")?;
    let (x, y) = ins.split_once(',')?;
    Some((
        x.chars().collect(),
        y.chars().collect(),
        out.chars().collect(),
    ))
}

fn find_attention(model: &TypedModel, qk_node: usize) -> TractResult<Option<Found>> {
    let qk = model.node(qk_node);
    let Some(qk_op) = qk.op_as::<EinSum>() else {
        return Ok(None);
    };
    if qk.inputs.len() != 2 || qk_op.q_params.is_some() || qk_op.operating_dt != f32::datum_type() {
        return Ok(None);
    }
    // q[a,b,m,k] · K[a,b,n,k] → [a,b,m,n]
    let Some((x, y, z)) = einsum_parts(qk_op) else {
        return Ok(None);
    };
    if x.len() != 4
        || y.len() != 4
        || x[..2] != y[..2]
        || x[3] != y[3]
        || z != [x[0], x[1], x[2], y[2]]
    {
        return Ok(None);
    }
    let Some((past_key, key)) = cache_concat(model, qk.inputs[1], qk_node)? else {
        return Ok(None);
    };
    let query = qk.inputs[0];

    let Some(mul) = only_successor(model, OutletId::new(qk_node, 0))
        .and_then(|n| bin_op_named(model, n, "Mul"))
    else {
        return Ok(None);
    };
    let scale_input = mul.inputs.iter().find(|i| i.node != qk_node);
    let Some(scale) = scale_input
        .and_then(|i| model.outlet_fact(*i).ok())
        .and_then(|f| f.konst.clone())
        .filter(|t| t.len() == 1 && t.datum_type() == f32::datum_type())
        .and_then(|t| t.cast_to_scalar::<f32>().ok())
    else {
        return Ok(None);
    };
    let Some(add) =
        only_successor(model, OutletId::new(mul.id, 0)).and_then(|n| bin_op_named(model, n, "Add"))
    else {
        return Ok(None);
    };
    let Some(&mask) = add.inputs.iter().find(|i| i.node != mul.id) else {
        return Ok(None);
    };
    let Some(softmax) = only_successor(model, OutletId::new(add.id, 0)).map(|n| model.node(n))
    else {
        return Ok(None);
    };
    match softmax.op_as::<Softmax>() {
        Some(op)
            if op.axes.as_slice() == [3]
                && op.kind == SoftmaxKind::Softmax
                && op.quant_output_dt.is_none() => {}
        _ => return Ok(None),
    }
    let Some(mut av) = only_successor(model, OutletId::new(softmax.id, 0)).map(|n| model.node(n))
    else {
        return Ok(None);
    };
    let mut query_slice = None;
    if let Some(slice) = av.op_as::<Slice>() {
        if slice.axis != 2 {
            return Ok(None);
        }
        query_slice = Some(slice.clone());
        let Some(next) = only_successor(model, OutletId::new(av.id, 0)).map(|n| model.node(n))
        else {
            return Ok(None);
        };
        av = next;
    }
    let probs = OutletId::new(
        query_slice
            .as_ref()
            .map_or(softmax.id, |_| av.inputs[0].node),
        0,
    );
    let Some(av_op) = av.op_as::<EinSum>() else {
        return Ok(None);
    };
    if av.inputs.len() != 2
        || av.inputs[0] != probs
        || av_op.q_params.is_some()
        || av_op.operating_dt != f32::datum_type()
    {
        return Ok(None);
    }
    // p[a,b,m,k] · V[a,b,k,n] → any order of (a?, b, m, n)
    let Some((x, y, z)) = einsum_parts(av_op) else {
        return Ok(None);
    };
    if x.len() != 4 || y.len() != 4 || x[..2] != y[..2] || x[3] != y[2] {
        return Ok(None);
    }
    let mut layout = Vec::new();
    for c in &z {
        let role = match *c {
            c if c == x[0] => OutAxis::Batch,
            c if c == x[1] => OutAxis::Head,
            c if c == x[2] => OutAxis::Query,
            c if c == y[3] => OutAxis::Dim,
            _ => return Ok(None),
        };
        layout.push(role);
    }
    for needed in [OutAxis::Head, OutAxis::Dim] {
        if layout.iter().filter(|r| **r == needed).count() != 1 {
            return Ok(None);
        }
    }
    // An output without the query axis sums over it: the same only for a single query row.
    let one_row = query_slice
        .as_ref()
        .is_some_and(|s| (s.end.clone() - s.start.clone()).to_i64().ok() == Some(1));
    match layout.iter().filter(|r| **r == OutAxis::Query).count() {
        1 => {}
        0 if one_row => {}
        _ => return Ok(None),
    }
    let Some((past_value, value)) = cache_concat(model, av.inputs[1], av.id)? else {
        return Ok(None);
    };

    let q_fact = model.outlet_fact(query)?;
    let k_fact = model.outlet_fact(key)?;
    let v_fact = model.outlet_fact(value)?;
    let m_fact = model.outlet_fact(mask)?;
    let all_f32 = [q_fact, k_fact, v_fact, m_fact]
        .iter()
        .all(|f| f.datum_type == f32::datum_type() && f.rank() == 4);
    if !all_f32 {
        return Ok(None);
    }
    let (Ok(heads), Ok(head_dim)) = (q_fact.shape[1].to_usize(), q_fact.shape[3].to_usize()) else {
        return Ok(None);
    };
    if q_fact.shape[0] != 1.to_dim()
        || k_fact.shape.dims() != q_fact.shape.dims()
        || v_fact.shape.dims() != q_fact.shape.dims()
    {
        return Ok(None);
    }
    let total = model.outlet_fact(qk.inputs[1])?.shape[2].clone();
    let slice_mask = query_slice.is_some() && m_fact.shape[2] == q_fact.shape[2];
    let (q_rows, mask_rows) = match &query_slice {
        Some(slice) => (
            slice.output_facts(&[q_fact])?.remove(0),
            if slice_mask {
                slice.output_facts(&[m_fact])?.remove(0)
            } else {
                m_fact.clone()
            },
        ),
        None => (q_fact.clone(), m_fact.clone()),
    };
    let facts = [&q_rows, k_fact, v_fact, &mask_rows];
    let Some(full) = full_attention_plan(model, &facts, &total, mul.id, softmax.id, av.id)? else {
        return Ok(None);
    };
    Ok(Some(Found {
        past_key,
        past_value,
        key_concat: qk.inputs[1],
        value_concat: av.inputs[1],
        query,
        key,
        value,
        mask,
        query_slice,
        slice_mask,
        attention: OutletId::new(av.id, 0),
        op: CachedAttention {
            heads,
            head_dim,
            scale,
            layout,
            full,
        },
    }))
}

/// The layer's own products (QKᵀ, ×scale, +mask, softmax, ·V) as a graph over the whole cache,
/// optimised by tract, for chunks longer than one position.
fn full_attention_plan(
    model: &TypedModel,
    facts: &[&TypedFact; 4],
    total: &TDim,
    mul: usize,
    softmax: usize,
    av: usize,
) -> TractResult<Option<Arc<TypedRunnableModel>>> {
    let query_len = facts[1].shape[2].clone();
    let mut sub = TypedModel::default();
    let l: TDim = sub.symbols.sym("L").into();
    let t: TDim = sub.symbols.sym("T").into();
    let rename = |d: &TDim| -> Option<TDim> {
        if d.to_i64().is_ok() {
            Some(d.clone())
        } else if *d == query_len {
            Some(l.clone())
        } else if d == total {
            Some(t.clone())
        } else {
            None
        }
    };
    let renamed = |fact: &TypedFact| -> Option<TypedFact> {
        let dims: Option<Vec<TDim>> = fact.shape.iter().map(rename).collect();
        dims.map(f32::fact)
    };
    let concat = |fact: &TypedFact| -> Option<TypedFact> {
        let mut dims: Vec<TDim> = fact.shape.iter().map(rename).collect::<Option<_>>()?;
        dims[2] = t.clone();
        Some(f32::fact(dims))
    };
    let (Some(qf), Some(kf), Some(vf), Some(mf)) = (
        renamed(facts[0]),
        concat(facts[1]),
        concat(facts[2]),
        renamed(facts[3]),
    ) else {
        return Ok(None);
    };
    let q = sub.add_source("q", qf)?;
    let k = sub.add_source("k", kf)?;
    let v = sub.add_source("v", vf)?;
    let m = sub.add_source("mask", mf)?;
    let mul_node = model.node(mul);
    let Some(&qk_out) = mul_node
        .inputs
        .iter()
        .find(|i| model.outlet_fact(**i).is_ok_and(|f| f.konst.is_none()))
    else {
        return Ok(None);
    };
    let scores = sub.wire_node("qk", model.node(qk_out.node).op.clone(), &[q, k])?[0];
    let mut mul_inputs = Vec::new();
    for i in &mul_node.inputs {
        if *i == qk_out {
            mul_inputs.push(scores);
        } else {
            let konst = model.outlet_fact(*i)?.konst.clone().context("scale")?;
            mul_inputs.push(sub.add_const("scale", konst)?);
        }
    }
    let scaled = sub.wire_node("scaled", mul_node.op.clone(), &mul_inputs)?[0];
    let softmax_node = model.node(softmax);
    let add = model.node(softmax_node.inputs[0].node);
    let add_inputs: Vec<OutletId> = add
        .inputs
        .iter()
        .map(|i| if i.node == mul { scaled } else { m })
        .collect();
    let masked = sub.wire_node("masked", add.op.clone(), &add_inputs)?[0];
    let probs = sub.wire_node("probs", softmax_node.op.clone(), &[masked])?[0];
    let out = sub.wire_node("attention", model.node(av).op.clone(), &[probs, v])?[0];
    sub.select_output_outlets(&[out])?;
    Ok(Some(sub.into_optimized()?.into_runnable()?))
}

/// Attention of `q [1,H,R,D]` (the last `R` of the chunk's `L` positions) over the cache grown by
/// `k`, `v [1,H,L,D]`, with an additive mask `[1, 1|H, 1|R, P+L]`; the output axes follow the
/// replaced product.
#[derive(Clone)]
pub(super) struct CachedAttention {
    heads: usize,
    head_dim: usize,
    scale: f32,
    layout: Vec<OutAxis>,
    full: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for CachedAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CachedAttention {{ heads: {}, head_dim: {}, scale: {}, layout: {:?} }}",
            self.heads, self.head_dim, self.scale, self.layout
        )
    }
}

impl PartialEq for CachedAttention {
    fn eq(&self, other: &Self) -> bool {
        self.heads == other.heads
            && self.head_dim == other.head_dim
            && self.scale == other.scale
            && self.layout == other.layout
            && Arc::ptr_eq(&self.full, &other.full)
    }
}
impl Eq for CachedAttention {}

impl Op for CachedAttention {
    fn name(&self) -> StaticName {
        "CachedAttention".into()
    }
    op_as_typed_op!();
}

impl EvalOp for CachedAttention {
    not_out_of_plan!();

    fn state(&self, _ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(Some(Box::new(KvState {
            op: self.clone(),
            keys: Vec::new(),
            values: Vec::new(),
            len: 0,
            capacity: 0,
        })))
    }
}

impl TypedOp for CachedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 4,
            "CachedAttention takes q, k, v and a mask"
        );
        let q = &inputs[0].shape;
        let dims: Vec<TDim> = self
            .layout
            .iter()
            .map(|axis| match axis {
                OutAxis::Batch => q[0].clone(),
                OutAxis::Head => q[1].clone(),
                OutAxis::Query => q[2].clone(),
                OutAxis::Dim => q[3].clone(),
            })
            .collect();
        Ok(tvec!(f32::fact(dims)))
    }
    as_op!();
}

/// Query rows per run of the layer's products in a prefill.
const QUERY_BLOCK: usize = 256;

/// One layer's cache, head-major with room to grow: `[H][capacity][D]` keys and values, the
/// first `len` positions of each head in use. Head-major keeps each head's rows contiguous for
/// the single-row attention (position-major rows of H·D floats sit a page apart).
#[derive(Clone, Debug)]
struct KvState {
    op: CachedAttention,
    keys: Vec<f32>,
    values: Vec<f32>,
    len: usize,
    capacity: usize,
}

impl KvState {
    fn append(&mut self, k: &[f32], v: &[f32], chunk: usize) {
        let (h, d, len) = (self.op.heads, self.op.head_dim, self.len);
        if len + chunk > self.capacity {
            // Exact for a prefill, then by an eighth: doubling would hold up to twice the cache,
            // and the cache is the largest thing a long context adds.
            let capacity = len + chunk.max(len / 8 + 16);
            let regrow = |old: &[f32]| {
                let mut grown = vec![0f32; h * capacity * d];
                for head in 0..h {
                    let (from, to) = (head * self.capacity * d, head * capacity * d);
                    grown[to..to + len * d].copy_from_slice(&old[from..from + len * d]);
                }
                grown
            };
            self.keys = regrow(&self.keys);
            self.values = regrow(&self.values);
            self.capacity = capacity;
        }
        for head in 0..h {
            let from = head * chunk * d;
            let to = (head * self.capacity + len) * d;
            self.keys[to..to + chunk * d].copy_from_slice(&k[from..from + chunk * d]);
            self.values[to..to + chunk * d].copy_from_slice(&v[from..from + chunk * d]);
        }
        self.len += chunk;
    }

    /// The cache as `[1,H,len,D]` tensors.
    fn head_major(&self) -> TractResult<(Tensor, Tensor)> {
        let (h, d, t) = (self.op.heads, self.op.head_dim, self.len);
        let mut k = Vec::with_capacity(h * t * d);
        let mut v = Vec::with_capacity(h * t * d);
        for head in 0..h {
            let at = head * self.capacity * d;
            k.extend_from_slice(&self.keys[at..at + t * d]);
            v.extend_from_slice(&self.values[at..at + t * d]);
        }
        Ok((
            Tensor::from_shape(&[1, h, t, d], &k)?,
            Tensor::from_shape(&[1, h, t, d], &v)?,
        ))
    }

    /// Several query rows through the layer's own products over the whole cache, [`QUERY_BLOCK`]
    /// rows at a time: a 2,300-token prefill would otherwise hold 16 × 2,300² scores (340 MB)
    /// several times over in each layer.
    fn attend_blocks(&self, q: &TValue, mask: &TValue, rows: usize) -> TractResult<Tensor> {
        let (keys, values) = self.head_major()?;
        let (keys, values) = (keys.into_tvalue(), values.into_tvalue());
        let mask_rows = mask.rank() == 4 && mask.shape()[2] == rows;
        let query_axis = self
            .op
            .layout
            .iter()
            .position(|a| *a == OutAxis::Query)
            .context("several query rows but no query axis in the output")?;
        let mut blocks = Vec::new();
        for start in (0..rows).step_by(QUERY_BLOCK) {
            let end = (start + QUERY_BLOCK).min(rows);
            let (q, mask) = if rows <= QUERY_BLOCK {
                (q.clone(), mask.clone())
            } else {
                let m = if mask_rows {
                    mask.slice(2, start, end)?.into_tvalue()
                } else {
                    mask.clone()
                };
                (q.slice(2, start, end)?.into_tvalue(), m)
            };
            let mut out = self
                .op
                .full
                .run(tvec![q, keys.clone(), values.clone(), mask])?;
            ensure!(
                out.len() == 1,
                "attention over the cache gave {} outputs",
                out.len()
            );
            blocks.push(out.remove(0).into_tensor());
        }
        if blocks.len() == 1 {
            return Ok(blocks.remove(0));
        }
        Tensor::stack_tensors(query_axis, &blocks)
    }

    /// One query position against the cache in place: `[H][D]`.
    fn attend_one(&self, q: &[f32], mask: &Tensor) -> TractResult<Vec<f32>> {
        let (h, d, t) = (self.op.heads, self.op.head_dim, self.len);
        let mask_shape = mask.shape();
        ensure!(
            mask_shape.len() == 4 && mask_shape[3] == t && mask_shape[2] == 1,
            "attention mask {mask_shape:?} does not cover the {t} cached positions"
        );
        let mask_heads = mask_shape[1];
        ensure!(
            mask_heads == 1 || mask_heads == h,
            "attention mask {mask_shape:?} for {h} heads"
        );
        let mask = mask.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut out = vec![0f32; h * d];
        let (keys, values, scale) = (&self.keys, &self.values, self.op.scale);
        let capacity = self.capacity;
        let work = 2 * h * t * d;
        tract_linalg::multithread::par_chunks_mut(&mut out, d, work, |first, chunk| {
            let mut scores = vec![0f32; t];
            for (i, out) in chunk.chunks_exact_mut(d).enumerate() {
                let head = first + i;
                let row_mask = &mask[(if mask_heads == 1 { 0 } else { head }) * t..][..t];
                attend_head(
                    &q[head * d..][..d],
                    keys,
                    values,
                    head * capacity * d,
                    d,
                    scale,
                    row_mask,
                    &mut scores,
                    out,
                );
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// softmax(q·Kᵀ·scale + mask)·V for one head; row `j` of K and V starts at `offset + j·stride`.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    offset: usize,
    stride: usize,
    scale: f32,
    mask: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe {
            return attend_head_avx2(q, keys, values, offset, stride, scale, mask, scores, out);
        }
    }
    attend_head_lanes(q, keys, values, offset, stride, scale, mask, scores, out)
}

/// The same loops compiled for 8-lane vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn attend_head_avx2(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    offset: usize,
    stride: usize,
    scale: f32,
    mask: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_head_lanes(q, keys, values, offset, stride, scale, mask, scores, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_head_lanes(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    offset: usize,
    stride: usize,
    scale: f32,
    mask: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = q.len();
    let mut max = f32::NEG_INFINITY;
    for (j, (s, m)) in scores.iter_mut().zip(mask).enumerate() {
        let at = offset + j * stride;
        *s = dot(q, &keys[at..at + d]) * scale + m;
        max = max.max(*s);
    }
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    let sum = sum_lanes(scores);
    out.fill(0.0);
    for (j, p) in scores.iter().enumerate() {
        let at = offset + j * stride;
        for (o, v) in out.iter_mut().zip(&values[at..at + d]) {
            *o += p * v;
        }
    }
    let norm = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= norm;
    }
}

/// Sixteen independent partial sums: two 8-lane vectors, so consecutive adds do not wait on
/// each other.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum_lanes(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// eˣ for x ≤ 0 (softmax after subtracting the row maximum) without a libm call, so the loop
/// over scores vectorises: x = n·ln2 + r, a degree-7 polynomial for eʳ (Cephes `expf`, within
/// 2 ulp), 2ⁿ from the exponent bits. Below −87 (masked keys) the result is exactly 0, as
/// `exp` of the mask's `f32::MIN` gives.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 88.0);
    let n = (clamped * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5e-1;
    let e = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        e * two_n
    }
}

impl OpState for KvState {
    fn eval(
        &mut self,
        _ctx: &EvalContext,
        _op: &dyn Op,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 4,
            "CachedAttention takes q, k, v and a mask"
        );
        let (h, d) = (self.op.heads, self.op.head_dim);
        let q_shape = inputs[0].shape().to_vec();
        ensure!(
            q_shape.len() == 4 && q_shape[0] == 1 && q_shape[1] == h && q_shape[3] == d,
            "query {q_shape:?} is not [1,{h},L,{d}]"
        );
        let rows = q_shape[2];
        let k_shape = inputs[1].shape().to_vec();
        ensure!(
            k_shape.len() == 4
                && k_shape[..2] == q_shape[..2]
                && k_shape[3] == d
                && k_shape[2] >= rows
                && inputs[2].shape() == k_shape.as_slice(),
            "new keys {k_shape:?} / values {:?} do not go with the query {q_shape:?}",
            inputs[2].shape()
        );
        let chunk = k_shape[2];
        let k = inputs[1].try_as_plain_ram()?.as_slice::<f32>()?;
        let v = inputs[2].try_as_plain_ram()?.as_slice::<f32>()?;
        self.append(k, v, chunk);
        let dims: Vec<usize> = self
            .op
            .layout
            .iter()
            .map(|axis| match axis {
                OutAxis::Batch => 1,
                OutAxis::Head => h,
                OutAxis::Query => rows,
                OutAxis::Dim => d,
            })
            .collect();
        if rows != 1 {
            let out = self.attend_blocks(&inputs[0], &inputs[3], rows)?;
            ensure!(
                out.shape() == dims.as_slice(),
                "attention over the cache gave {:?}, expected {dims:?}",
                out.shape()
            );
            return Ok(tvec![out.into_tvalue()]);
        }
        let q = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        let heads_out = self.attend_one(q, &inputs[3])?;
        // [H][D] written in the output's axis order (batch and query have one position).
        let head_first = self.op.layout.iter().position(|a| *a == OutAxis::Head)
            < self.op.layout.iter().position(|a| *a == OutAxis::Dim);
        let data = if head_first {
            heads_out
        } else {
            let mut t = vec![0f32; h * d];
            for head in 0..h {
                for i in 0..d {
                    t[i * h + head] = heads_out[head * d + i];
                }
            }
            t
        };
        Ok(tvec![Tensor::from_shape(&dims, &data)?.into_tvalue()])
    }

    fn reset_lanes(&mut self, _lanes: &[LaneId]) -> TractResult<()> {
        bail!("the decoder's KV cache serves one sequence")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math;

    const HEADS: usize = 3;
    const DIM: usize = 8;

    /// One attention layer as the exporter writes it: explicit past in, present out; with
    /// `last_row`, only the last query row is kept (as tract does for the last layer).
    fn layer(output: &str, last_row: bool) -> TypedModel {
        let mut m = TypedModel::default();
        let l: TDim = m.symbols.sym("L").into();
        let p: TDim = m.symbols.sym("P").into();
        let new = || f32::fact([1.to_dim(), HEADS.to_dim(), l.clone(), DIM.to_dim()]);
        let past = || f32::fact([1.to_dim(), HEADS.to_dim(), p.clone(), DIM.to_dim()]);
        let q = m.add_source("q", new()).unwrap();
        let k = m.add_source("k", new()).unwrap();
        let v = m.add_source("v", new()).unwrap();
        let mask = m
            .add_source(
                "mask",
                f32::fact([1.to_dim(), 1.to_dim(), l.clone(), p.clone() + l.clone()]),
            )
            .unwrap();
        let past_k = m.add_source("past_key_0", past()).unwrap();
        let past_v = m.add_source("past_value_0", past()).unwrap();
        let keys = m
            .wire_node("keys", TypedConcat::new(2), &[past_k, k])
            .unwrap()[0];
        let values = m
            .wire_node("values", TypedConcat::new(2), &[past_v, v])
            .unwrap()[0];
        let qk = EinSum::new("abmk,abnk->abmn".parse().unwrap(), f32::datum_type());
        let scores = m.wire_node("qk", qk, &[q, keys]).unwrap()[0];
        let scale = m.add_const("scale", tensor4(&[[[[0.35f32]]]])).unwrap();
        let scaled = m
            .wire_node("scaled", math::mul(), &[scores, scale])
            .unwrap()[0];
        let masked = m.wire_node("masked", math::add(), &[scaled, mask]).unwrap()[0];
        let softmax = Softmax::new(tvec![3], None, SoftmaxKind::Softmax);
        let mut probs = m.wire_node("probs", softmax, &[masked]).unwrap()[0];
        if last_row {
            let slice = Slice::new(2, l.clone() - 1, l.clone());
            probs = m.wire_node("last_row", slice, &[probs]).unwrap()[0];
        }
        let av = EinSum::new(
            format!("abmk,abkn->{output}").parse().unwrap(),
            f32::datum_type(),
        );
        let out = m.wire_node("attention", av, &[probs, values]).unwrap()[0];
        m.select_output_outlets(&[out, keys, values]).unwrap();
        m
    }

    fn random(seed: &mut u64, shape: &[usize]) -> TValue {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_shape(shape, &data).unwrap().into_tvalue()
    }

    /// Random keys masked out (as the exporter's causal mask does, with f32::MIN).
    fn mask(seed: &mut u64, rows: usize, total: usize) -> TValue {
        let r = random(seed, &[1, 1, rows, total]);
        let data: Vec<f32> = r
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if *x > 0.6 && i % total != 0 {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_shape(&[1, 1, rows, total], &data)
            .unwrap()
            .into_tvalue()
    }

    fn max_abs(a: &TValue, b: &TValue) -> f32 {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (
            a.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec(),
            b.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec(),
        );
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Prefill, single steps and a multi-position chunk over a cache: the fused node in plan
    /// state gives what the exported graph gives with the cache fed back by hand.
    #[test]
    fn cached_attention_matches_explicit_cache() {
        for (output, last_row) in [
            ("abmn", false),
            ("mbn", false),
            ("nmb", false),
            ("bn", true),
        ] {
            let reference = layer(output, last_row)
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let mut model = layer(output, last_row).into_decluttered().unwrap();
            assert!(keep_kv_cache_in_state(&mut model, 1).unwrap(), "{output}");
            assert_eq!(model.inputs.len(), 4);
            assert_eq!(model.outputs.len(), 1);
            let plan = model.into_optimized().unwrap().into_runnable().unwrap();
            let mut state = TypedSimpleState::new(&plan).unwrap();
            let empty = Tensor::zero::<f32>(&[1, HEADS, 0, DIM])
                .unwrap()
                .into_tvalue();
            let (mut past_k, mut past_v) = (empty.clone(), empty);
            let mut seed = 7u64;
            let mut past = 0;
            for chunk in [5, 1, 1, 3, QUERY_BLOCK + 44, 1, 1] {
                let shape = [1, HEADS, chunk, DIM];
                let (q, k, v) = (
                    random(&mut seed, &shape),
                    random(&mut seed, &shape),
                    random(&mut seed, &shape),
                );
                let m = mask(&mut seed, chunk, past + chunk);
                let want = reference
                    .run(tvec![
                        q.clone(),
                        k.clone(),
                        v.clone(),
                        m.clone(),
                        past_k,
                        past_v
                    ])
                    .unwrap();
                let got = state.run(tvec![q, k, v, m]).unwrap();
                let err = max_abs(&got[0], &want[0]);
                assert!(err < 1e-5, "{output}, chunk {chunk} after {past}: {err}");
                past_k = want[1].clone();
                past_v = want[2].clone();
                past += chunk;
            }
        }
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max((got - want).abs() / want.max(f32::MIN_POSITIVE));
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    /// A graph where not every layer has the pattern keeps its explicit cache.
    #[test]
    fn unmatched_graph_is_left_alone() {
        let mut model = layer("abmn", false).into_decluttered().unwrap();
        let nodes = model.nodes().len();
        assert!(!keep_kv_cache_in_state(&mut model, 2).unwrap());
        assert_eq!(model.nodes().len(), nodes);
        assert_eq!(model.inputs.len(), 6);
        assert_eq!(model.outputs.len(), 3);
    }
}
