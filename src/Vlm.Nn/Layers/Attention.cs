using Vlm.Core;

namespace Vlm.Nn;

/// <summary>
/// Generic pieces of multi-head attention (Vaswani et al. 2017, "Attention Is All You Need"), laid out like
/// HF BERT/CLIP: heads split from the channel dim, scores = q·kᵀ·scale + additive mask, softmax, dropout on
/// the probabilities, then probabilities·v. Masks are ADDITIVE float tensors broadcastable to (B, H, Tq, Tk).
/// </summary>
public static class AttentionOps
{
    /// <summary>(B, T, H·D) → (B, H, T, D), a view.</summary>
    public static Tensor SplitHeads(Tensor x, int heads)
    {
        if (x.Rank != 3 || x.Size(2) % heads != 0)
            throw new ArgumentException($"SplitHeads: {x.ShapeString} is not (B, T, C) with C divisible by {heads} heads");
        int b = x.Size(0), t = x.Size(1), d = x.Size(2) / heads;
        var split = x.Reshape(b, t, heads, d);
        var y = split.Permute(0, 2, 1, 3);
        Intermediates.Free(split, keep: x);   // the in-between view would otherwise hold the buffer until the GC runs
        return y;
    }

    /// <summary>(B, H, T, D) → (B, T, H·D) (copies when the input is a permuted view).</summary>
    public static Tensor MergeHeads(Tensor x)
    {
        if (x.Rank != 4) throw new ArgumentException($"MergeHeads: {x.ShapeString} is not (B, H, T, D)");
        int b = x.Size(0), h = x.Size(1), t = x.Size(2), d = x.Size(3);
        var perm = x.Permute(0, 2, 1, 3);
        var y = perm.Reshape(b, t, h * d);
        Intermediates.Free(perm, keep: y);
        return y;
    }

    /// <summary>HF's get_extended_attention_mask: a (B, Tk) keep-mask (1 keep, 0 pad; any dtype) becomes the additive
    /// (B, 1, 1, Tk) mask (1 - m)·float.MinValue, so padded keys get probability 0.</summary>
    public static Tensor ExtendedMask(Tensor mask)
    {
        if (mask.Rank != 2) throw new ArgumentException($"ExtendedMask: attention mask {mask.ShapeString} is not (B, T)");
        var m = mask.To(DType.Float32).Contiguous();
        var r = Tensor.Empty([mask.Size(0), 1, 1, mask.Size(1)]);
        var ms = m.Span; var rs = r.Span;
        for (int i = 0; i < ms.Length; i++) rs[i] = (1f - ms[i]) * float.MinValue;
        return r;
    }

    /// <summary>Additive causal mask (1, 1, T, T): 0 on and below the diagonal, float.MinValue above.</summary>
    public static Tensor CausalMask(int t)
    {
        var r = Tensor.Zeros(1, 1, t, t);
        var s = r.Span;
        for (int i = 0; i < t; i++) for (int j = i + 1; j < t; j++) s[i * t + j] = float.MinValue;
        return r;
    }

    /// <summary>softmax(q·kᵀ·scale + mask) (optionally dropped out) · v. q (B, H, Tq, D), k/v (B, H, Tk, D) → (B, H, Tq, D).
    /// <paramref name="scale"/> defaults to 1/√D; the probabilities are dropped out when <paramref name="dropout"/> is
    /// in training mode. Runs the fused <see cref="F.ScaledDotProductAttention"/>.</summary>
    public static Tensor ScaledDotProduct(Tensor q, Tensor k, Tensor v, Tensor? additiveMask = null, Dropout? dropout = null, float? scale = null,
        bool causal = false)
    {
        bool drop = dropout is { Training: true, P: > 0f };
        return F.ScaledDotProductAttention(q, k, v, additiveMask, causal, scale, drop ? dropout!.P : 0f, drop ? dropout!.Context.Rng : null);
    }
}

/// <summary>Names of the four projections of a <see cref="MultiHeadAttention"/> in the checkpoint.</summary>
public sealed record AttentionNames(string Query = "q_proj", string Key = "k_proj", string Value = "v_proj", string Output = "out_proj")
{
    /// <summary>CLIP/BART style: q_proj, k_proj, v_proj, out_proj.</summary>
    public static AttentionNames Clip { get; } = new();
}

/// <summary>
/// Self or cross multi-head attention with four Linear projections (q from x; k, v from the context, or x).
/// HF BERT-style modules with their nested names ("attention.self.query", "attention.output.dense") are built by
/// the model code from <see cref="AttentionOps"/> and <see cref="Linear"/> instead.
/// </summary>
public sealed class MultiHeadAttention : Module
{
    public int Dim { get; }
    public int Heads { get; }
    public Linear Query { get; }
    public Linear Key { get; }
    public Linear Value { get; }
    public Linear Output { get; }
    private readonly Dropout _attnDropout;

    /// <param name="kvDim">Channels of the context for cross attention (default: <paramref name="dim"/>).</param>
    public MultiHeadAttention(int dim, int heads, VarBuilder vb, int? kvDim = null, bool bias = true, float attentionDropout = 0f,
        AttentionNames? names = null, Initializer? weightInit = null, Initializer? biasInit = null)
    {
        if (heads <= 0 || dim % heads != 0) throw new ArgumentException($"MultiHeadAttention {vb.Prefix}: dim {dim} is not divisible by {heads} heads");
        names ??= AttentionNames.Clip;
        Dim = dim;
        Heads = heads;
        int kv = kvDim ?? dim;
        Query = Add(new Linear(dim, dim, vb[names.Query], bias, weightInit, biasInit));
        Key = Add(new Linear(kv, dim, vb[names.Key], bias, weightInit, biasInit));
        Value = Add(new Linear(kv, dim, vb[names.Value], bias, weightInit, biasInit));
        Output = Add(new Linear(dim, dim, vb[names.Output], bias, weightInit, biasInit));
        _attnDropout = Add(new Dropout(attentionDropout, vb));
    }

    /// <param name="x">(B, Tq, dim)</param>
    /// <param name="context">(B, Tk, kvDim) for cross attention; null for self attention.</param>
    /// <param name="additiveMask">broadcastable to (B, H, Tq, Tk), e.g. <see cref="AttentionOps.ExtendedMask"/>.</param>
    public Tensor Forward(Tensor x, Tensor? context = null, Tensor? additiveMask = null, bool causal = false)
    {
        var ctx = context ?? x;
        var q = AttentionOps.SplitHeads(Query.Forward(x), Heads);   // (B, H, Tq, D)
        var k = AttentionOps.SplitHeads(Key.Forward(ctx), Heads);   // (B, H, Tk, D)
        var v = AttentionOps.SplitHeads(Value.Forward(ctx), Heads); // (B, H, Tk, D)
        var o = AttentionOps.ScaledDotProduct(q, k, v, additiveMask, _attnDropout, causal: causal);
        return Output.Forward(AttentionOps.MergeHeads(o));
    }
}
