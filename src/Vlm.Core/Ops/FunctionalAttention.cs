using System.Numerics.Tensors;
using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>
/// Fused scaled dot-product attention (Vaswani et al. 2017), the math of
/// torch.nn.functional.scaled_dot_product_attention and of HF's eager attention:
///   P = softmax(scale · Q Kᵀ + mask),  O = dropout(P) V.
/// Heads run in parallel, each with single-threaded GEMMs on spans (faster than splitting small products over
/// cores). Transposed views such as (B, T, H, D).transpose(1, 2) are read in place through their row stride.
/// </summary>
public static partial class F
{
    /// <summary>Attention output (B, H, Tq, Dv) for q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv).</summary>
    /// <param name="mask">float32: added to the scores (HF extended masks: 0 keep, large negative drop);
    /// bool/uint8: true = attend, false = −inf (torch's boolean attn_mask). Broadcastable to (B, H, Tq, Tk).
    /// A row with every position −inf gives NaN like torch; a large-negative float mask gives a uniform row like HF.
    /// A float mask that requires grad (a learned relative-position bias, as in BEiT) gets its gradient, summed over
    /// the dims it was broadcast along.</param>
    /// <param name="causal">query i attends to keys j ≤ i (top-left aligned, like torch's is_causal).</param>
    /// <param name="scale">defaults to 1/√D.</param>
    /// <param name="dropoutP">dropout on the probabilities (training); needs <paramref name="rng"/> when &gt; 0.</param>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor? mask = null, bool causal = false,
        float? scale = null, float dropoutP = 0f, Rng? rng = null)
        => AttentionCore(q, k, v, mask, causal, scale, dropoutP, rng, wantProbs: false).output;

    /// <summary>As <see cref="ScaledDotProductAttention"/>, also returning the attention probabilities (B, H, Tq, Tk)
    /// after dropout, as HF returns them for output_attentions. The probabilities are not part of the graph
    /// (no gradient flows through them).</summary>
    public static (Tensor Output, Tensor Probs) ScaledDotProductAttentionWithProbs(Tensor q, Tensor k, Tensor v, Tensor? mask = null,
        bool causal = false, float? scale = null, float dropoutP = 0f, Rng? rng = null)
    {
        var (o, p) = AttentionCore(q, k, v, mask, causal, scale, dropoutP, rng, wantProbs: true);
        return (o, p!);
    }

    /// <summary>A (B, H, T, D) operand as per-head row-major matrices: base offset of head (b, h) and row stride.</summary>
    private readonly record struct HeadLayout(float[] Data, int Offset, int StrideB, int StrideH, int RowStride)
    {
        public int Base(int b, int h) => Offset + b * StrideB + h * StrideH;

        public static HeadLayout Of(ref Tensor t)
        {
            int cols = t.Size(3), rows = t.Size(2);
            if (t.Stride(3) != 1 && cols > 1 || rows > 1 && t.Stride(2) < cols) t = t.Contiguous();
            return new HeadLayout(t.Data, t.Offset, t.Stride(0), t.Stride(1), rows > 1 ? t.Stride(2) : Math.Max(cols, 1));
        }
    }

    /// <summary>A fresh (B, H, T, D)-shaped tensor whose storage is laid out as (B, T, H, D).</summary>
    private static Tensor HeadsLastView(int B, int H, int T, int D) =>
        new(Storage.Allocate(DType.Float32, B * T * H * D, zero: false), [B, H, T, D], [T * H * D, D, H * D, 1], 0, retain: false);

    private static (Tensor output, Tensor? probs) AttentionCore(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal,
        float? scaleOpt, float dropoutP, Rng? rng, bool wantProbs)
    {
        q.RequireFloat(); k.RequireFloat(); v.RequireFloat();
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"attention expects q, k, v of rank 4 (B, H, T, D); got {q.ShapeString}, {k.ShapeString}, {v.ShapeString}");
        int B = q.Size(0), H = q.Size(1), Tq = q.Size(2), D = q.Size(3);
        int Tk = k.Size(2), Dv = v.Size(3);
        if (k.Size(0) != B || k.Size(1) != H || k.Size(3) != D || v.Size(0) != B || v.Size(1) != H || v.Size(2) != Tk)
            throw new ArgumentException($"attention shape mismatch: q {q.ShapeString}, k {k.ShapeString}, v {v.ShapeString}");
        if (!(dropoutP >= 0f && dropoutP <= 1f)) throw new ArgumentOutOfRangeException(nameof(dropoutP), $"dropout probability must be in [0, 1], got {dropoutP}");
        if (dropoutP > 0f && rng is null) throw new ArgumentException("attention dropout needs an Rng", nameof(rng));
        float scale = scaleOpt ?? 1f / MathF.Sqrt(D);

        // Mask geometry: strides reading it as (B, H, Tq, Tk), 0 on broadcast dims.
        int[]? ms = null; int mOff = 0; float[]? mF = null; byte[]? mB = null;
        if (mask != null)
        {
            if (mask.Rank > 4) throw new ArgumentException($"attention mask of shape {mask.ShapeString} has rank > 4");
            var mShape = new int[4]; var mStr = new int[4];
            for (int i = 0; i < 4; i++)
            {
                int src = i - (4 - mask.Rank);
                mShape[i] = src < 0 ? 1 : mask.Size(src);
                mStr[i] = src < 0 ? 0 : mask.Stride(src);
            }
            try { ms = ShapeUtil.BroadcastStrides(mShape, mStr, [B, H, Tq, Tk]); }
            catch (ArgumentException) { throw new ArgumentException($"attention mask of shape {mask.ShapeString} cannot be broadcast to (B, H, Tq, Tk) = ({B}, {H}, {Tq}, {Tk})"); }
            mOff = mask.Offset;
            switch (mask.DType)
            {
                case DType.Float32: mF = mask.Data; break;
                case DType.Bool or DType.UInt8: mB = mask.Storage.U8; break;
                default: throw new ArgumentException($"attention mask must be float32 (additive) or bool, got {mask.DType}");
            }
        }

        var qc = q; var kc = k; var vc = v;
        var ql = HeadLayout.Of(ref qc); var kl = HeadLayout.Of(ref kc); var vl = HeadLayout.Of(ref vc);
        // Contiguous copies made for the layouts go back to the pool once this op's own use of them is over (the
        // backward, when recorded, holds them through Recorder.Save and reads them through the layouts' arrays).
        void DropCopies()
        {
            Tensor.DropCopy(qc, q);
            Tensor.DropCopy(kc, k);
            Tensor.DropCopy(vc, v);
        }
        // Fewer heads than cores (one long sequence): let each product use the cores instead.
        bool innerParallel = B * H < Environment.ProcessorCount;
        Tensor[] inputs = mF != null ? [q, k, v, mask!] : [q, k, v];
        bool record = Recorder.ShouldRecord(inputs);
        bool keepP = record || wantProbs;
        int heads = B * H, tt = Tq * Tk;
        // The output is stored as (B, Tq, H, Dv) and returned as its (B, H, Tq, Dv) view, so the caller's usual
        // out.Transpose(1, 2).Reshape(B, Tq, H·Dv) is free (no copy).
        var output = HeadsLastView(B, H, Tq, Dv);
        var probs = keepP ? Tensor.NewResult([B, H, Tq, Tk]) : null;
        float[]? dmask = dropoutP > 0f ? DropoutMask(heads * tt, dropoutP, rng!) : null;
        // Post-dropout probabilities when they are returned (HF returns them after dropout).
        var probsOut = wantProbs && dmask != null ? Tensor.NewResult([B, H, Tq, Tk]) : probs;
        float[] od = output.Data;

        bool reference = UseReferenceAttention;
        if (tt == 0 || heads == 0)
        {
            // No queries or no keys: an empty output, or zeros (the empty sum over keys); nothing to read.
            Array.Clear(od, 0, B * Tq * H * Dv);
        }
        else if (!keepP && dmask == null && !reference)
        {
            BlockedForward(B, H, Tq, Tk, D, Dv, scale, ql, kl, vl, mF, mB, ms, mOff, causal, od);
            DropCopies();
            return (output, null);
        }
        else Parallel.For(0, heads, new ParallelOptions { MaxDegreeOfParallelism = heads * (long)tt * (D + Dv) < 20000 ? 1 : -1 },
            () => new float[2 * tt + Tq],
            (i, _, scratch) =>
            {
                int b = i / H, h = i % H;
                var p = keepP ? probs!.Data.AsSpan(i * tt, tt) : scratch.AsSpan(0, tt);
                Gemm.Sgemm(false, true, Tq, Tk, D, scale, ql.Data.AsSpan(ql.Base(b, h)), ql.RowStride,
                    kl.Data.AsSpan(kl.Base(b, h)), kl.RowStride, 0f, p, Tk, parallel: innerParallel);
                if (reference)
                {
                    for (int r = 0; r < Tq; r++)
                    {
                        var row = p.Slice(r * Tk, Tk);
                        MaskRow(row, b, h, r, mF, mB, ms, mOff, causal);
                        SoftmaxRow(row, row);
                    }
                }
                else
                {
                    // The same rows → exp → PV → ÷sum arithmetic as the blocked inference forward, so asking for the
                    // probabilities (or recording) does not change the output's bits.
                    var inv = scratch.AsSpan(2 * tt, Tq);
                    ExpRows(p, 0, Tq, Tk, b, h, mF, mB, ms, mOff, causal, inv);
                    if (dmask == null)
                    {
                        int oo = b * Tq * H * Dv + h * Dv;
                        Gemm.Sgemm(false, false, Tq, Dv, Tk, 1f, p, Tk, vl.Data.AsSpan(vl.Base(b, h)), vl.RowStride,
                            0f, od.AsSpan(oo), H * Dv, parallel: innerParallel);
                        ScaleRows(od, oo, H * Dv, Dv, inv);
                    }
                    for (int r = 0; r < Tq; r++) { var row = p.Slice(r * Tk, Tk); TensorPrimitives.Multiply(row, inv[r], row); }
                    if (dmask == null) return scratch;
                }
                Span<float> pd = p;
                if (dmask != null)
                {
                    pd = probsOut != probs ? probsOut!.Data.AsSpan(i * tt, tt) : scratch.AsSpan(tt, tt);
                    TensorPrimitives.Multiply(p, dmask.AsSpan(i * tt, tt), pd);
                }
                Gemm.Sgemm(false, false, Tq, Dv, Tk, 1f, pd, Tk, vl.Data.AsSpan(vl.Base(b, h)), vl.RowStride,
                    0f, od.AsSpan(b * Tq * H * Dv + h * Dv), H * Dv, parallel: innerParallel);
                return scratch;
            }, _ => { });

        if (!record)
        {
            DropCopies();
            return (output, probsOut);
        }
        Recorder.Save(qc); Recorder.Save(kc); Recorder.Save(vc); Recorder.Save(probs!);
        float[] pdata = probs!.Data;
        // The node now holds what it saved: drop this op's own holds on private copies so their buffers are recycled
        // once the backward has run (the closure reads them through the layouts' arrays).
        // Without wantProbs nobody else receives probs (the wrapper drops the tuple's second item): the node's hold is
        // then the only one, so the buffer returns to the pool after backward instead of waiting for the GC.
        if (!wantProbs || !ReferenceEquals(probsOut, probs)) probs.Dispose();
        DropCopies();
        Recorder.Record(output, "scaled_dot_product_attention", inputs, g =>
        {
            // g usually arrives as the (B, H, Tq, Dv) view of a contiguous (B, Tq, H·Dv) gradient: read it in place.
            var gc = g;
            var gl = HeadLayout.Of(ref gc);
            bool nq = q.RequiresGrad, nk = k.RequiresGrad, nv = v.RequiresGrad;
            if (tt == 0 || heads == 0)
                return mF == null ? [nq ? Tensor.Zeros(q.ShapeArray()) : null, nk ? Tensor.Zeros(k.ShapeArray()) : null, nv ? Tensor.Zeros(v.ShapeArray()) : null]
                    : [nq ? Tensor.Zeros(q.ShapeArray()) : null, nk ? Tensor.Zeros(k.ShapeArray()) : null, nv ? Tensor.Zeros(v.ShapeArray()) : null,
                        mask!.RequiresGrad ? Tensor.Zeros(mask.ShapeArray()) : null];
            // Gradients in (B, T, H, D) storage, viewed as (B, H, T, D): the backward of the caller's transpose is then
            // contiguous and flows into the projection's backward without a copy.
            var dq = nq ? HeadsLastView(B, H, Tq, D) : null;
            var dk = nk ? HeadsLastView(B, H, Tk, D) : null;
            var dv = nv ? HeadsLastView(B, H, Tk, Dv) : null;
            // Gradient of the scores, kept whole only when the additive mask needs it.
            var dScores = mF != null && mask!.RequiresGrad ? Tensor.NewResult([B, H, Tq, Tk]) : null;
            Parallel.For(0, heads, new ParallelOptions { MaxDegreeOfParallelism = heads * (long)tt * (D + Dv) < 10000 ? 1 : -1 },
                () => new float[2 * tt],
                (i, _, scratch) =>
                {
                    int b = i / H, h = i % H;
                    var p = pdata.AsSpan(i * tt, tt);
                    var gi = gl.Data.AsSpan(gl.Base(b, h));
                    int ldg = gl.RowStride;
                    var dp = scratch.AsSpan(0, tt);
                    if (dv != null)
                    {
                        ReadOnlySpan<float> pd = p;
                        if (dmask != null)
                        {
                            var t = scratch.AsSpan(tt, tt);
                            TensorPrimitives.Multiply(p, dmask.AsSpan(i * tt, tt), t);
                            pd = t;
                        }
                        // dV = dropout(P)ᵀ · g
                        Gemm.Sgemm(true, false, Tk, Dv, Tq, 1f, pd, Tk, gi, ldg, 0f, dv.Data.AsSpan(b * Tk * H * Dv + h * Dv), H * Dv, parallel: innerParallel);
                    }
                    if (dq == null && dk == null && dScores == null) return scratch;
                    // dP = g · Vᵀ, through the dropout mask, then the softmax Jacobian row by row.
                    Gemm.Sgemm(false, true, Tq, Tk, Dv, 1f, gi, ldg, vl.Data.AsSpan(vl.Base(b, h)), vl.RowStride, 0f, dp, Tk, parallel: innerParallel);
                    if (dmask != null) TensorPrimitives.Multiply(dp, dmask.AsSpan(i * tt, tt), dp);
                    for (int r = 0; r < Tq; r++)
                    {
                        var pr = p.Slice(r * Tk, Tk); var dr = dp.Slice(r * Tk, Tk);
                        SoftmaxBackwardRow(pr, dr, dr);
                    }
                    if (dScores != null) dp.CopyTo(dScores.Data.AsSpan(i * tt, tt));
                    if (dq != null)
                        Gemm.Sgemm(false, false, Tq, D, Tk, scale, dp, Tk, kl.Data.AsSpan(kl.Base(b, h)), kl.RowStride,
                            0f, dq.Data.AsSpan(b * Tq * H * D + h * D), H * D, parallel: innerParallel);
                    if (dk != null)
                        Gemm.Sgemm(true, false, Tk, D, Tq, scale, dp, Tk, ql.Data.AsSpan(ql.Base(b, h)), ql.RowStride,
                            0f, dk.Data.AsSpan(b * Tk * H * D + h * D), H * D, parallel: innerParallel);
                    return scratch;
                }, _ => { });
            if (mF == null) return [dq, dk, dv];
            return [dq, dk, dv, dScores?.SumTo(mask!.Shape)];
        });
        return (output, wantProbs ? probsOut : null);
    }

    /// <summary>Forces the reference forward: per head one Q·Kᵀ GEMM, the plain row softmax (max, subtract, exp, sum,
    /// scale: five passes) and one P·V GEMM on the normalised P, the algorithm the fast paths replaced. Tests compare
    /// the fast paths with it; VLM_SDPA_REF=1 selects it at run time for interleaved A/B timings.</summary>
    [ThreadStatic] internal static bool ForceReferenceAttention;

    private static bool UseReferenceAttention =>
        ForceReferenceAttention || Environment.GetEnvironmentVariable("VLM_SDPA_REF") == "1";

    /// <summary>Query rows per work item of the blocked forward. Splitting a head's rows re-packs Kᵀ and V per block
    /// and measured slower than whole heads when there are enough heads to feed the cores (row blocks of 72 did not
    /// gain from keeping the score block in L1/L2: the 325×325 scores of a head fit the 1 MiB L2 anyway), so heads
    /// are only split when there are fewer than two per core. VLM_SDPA_ROWS overrides it (tuning).</summary>
    private static int AttentionRowBlock(int heads, int tq)
    {
        var env = Environment.GetEnvironmentVariable("VLM_SDPA_ROWS");
        if (env != null && int.TryParse(env, out int forced) && forced > 0) return Math.Min(forced, tq);
        int want = 2 * Environment.ProcessorCount;
        if (heads >= want) return tq;
        int blocks = (want + heads - 1) / heads;
        return Math.Max(6, ((tq + blocks - 1) / blocks + 5) / 6 * 6);
    }

    /// <summary>
    /// Inference forward (no probabilities kept, no dropout), per (batch, head, query-row block): S = scale·Q_blk·Kᵀ
    /// into a block that stays in cache, then one pass per row adds the mask and finds the max, one pass takes
    /// exp(s − max) and its sum, O_blk = exp(S)·V is written straight into the (B, Tq, H, Dv) output and its rows are
    /// divided by the sums (Dv values per row instead of Tk). Fully masked rows give NaN, as the reference does.
    /// </summary>
    private static void BlockedForward(int B, int H, int Tq, int Tk, int D, int Dv, float scale, HeadLayout ql, HeadLayout kl,
        HeadLayout vl, float[]? mF, byte[]? mB, int[]? ms, int mOff, bool causal, float[] od)
    {
        if (B * H == 0 || Tq == 0 || Dv == 0) return;
        int rb = AttentionRowBlock(B * H, Tq);
        int nblk = (Tq + rb - 1) / rb;
        int items = B * H * nblk;
        long work = (long)B * H * Tq * Tk * (D + Dv);
        Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = work < 20000 ? 1 : -1 },
            // Pooled: a fresh per-call scratch of this size is a zeroed large-object allocation per worker.
            () => System.Buffers.ArrayPool<float>.Shared.Rent(rb * Tk + rb),
            (it, _, scratch) =>
            {
                int blk = it % nblk, bh = it / nblk, b = bh / H, h = bh % H;
                int r0 = blk * rb, rows = Math.Min(rb, Tq - r0);
                var s = scratch.AsSpan(0, rows * Tk);
                var inv = scratch.AsSpan(rb * Tk, rows);
                Gemm.Sgemm(false, true, rows, Tk, D, scale, ql.Data.AsSpan(ql.Base(b, h) + r0 * ql.RowStride), ql.RowStride,
                    kl.Data.AsSpan(kl.Base(b, h)), kl.RowStride, 0f, s, Tk, parallel: false);
                ExpRows(s, r0, rows, Tk, b, h, mF, mB, ms, mOff, causal, inv);
                int oo = b * Tq * H * Dv + r0 * H * Dv + h * Dv;
                Gemm.Sgemm(false, false, rows, Dv, Tk, 1f, s, Tk, vl.Data.AsSpan(vl.Base(b, h)), vl.RowStride,
                    0f, od.AsSpan(oo), H * Dv, parallel: false);
                ScaleRows(od, oo, H * Dv, Dv, inv);
                return scratch;
            }, scratch => System.Buffers.ArrayPool<float>.Shared.Return(scratch));
    }

    /// <summary>Adds the float mask (or applies the boolean mask and causal cut) to score row r of head (b, h).</summary>
    private static void MaskRow(Span<float> row, int b, int h, int r, float[]? mF, byte[]? mB, int[]? ms, int mOff, bool causal)
    {
        int tk = row.Length;
        if (mF != null)
        {
            int mo = mOff + b * ms![0] + h * ms[1] + r * ms[2];
            if (ms[3] == 1) TensorPrimitives.Add(row, mF.AsSpan(mo, tk), row);
            else for (int j = 0; j < tk; j++) row[j] += mF[mo + j * ms[3]];
        }
        else if (mB != null)
        {
            int mo = mOff + b * ms![0] + h * ms[1] + r * ms[2];
            for (int j = 0; j < tk; j++) if (mB[mo + j * ms[3]] == 0) row[j] = float.NegativeInfinity;
        }
        if (causal && r + 1 < tk) row[(r + 1)..].Fill(float.NegativeInfinity);
    }

    /// <summary>Score rows r0.. r0+rows of head (b, h) in <paramref name="s"/> become exp(s + mask − max) (unnormalised
    /// softmax, two passes: max, then exp with its sum); inv[i] gets 1/sum. A row with every score −inf becomes NaN
    /// (torch's result for a fully masked row).</summary>
    private static void ExpRows(Span<float> s, int r0, int rows, int tk, int b, int h, float[]? mF, byte[]? mB, int[]? ms,
        int mOff, bool causal, Span<float> inv)
    {
        if (tk == 0) { inv[..rows].Fill(1f); return; }   // no keys: the empty product gives zeros, as before
        for (int i = 0; i < rows; i++)
        {
            var row = s.Slice(i * tk, tk);
            MaskRow(row, b, h, r0 + i, mF, mB, ms, mOff, causal);
            float max = TensorPrimitives.Max(row);
            if (float.IsNegativeInfinity(max)) { row.Fill(float.NaN); inv[i] = 1f; continue; }
            inv[i] = 1f / FastMath.ExpShiftSum(row, max);
        }
    }

    /// <summary>Multiplies output rows (n values each, <paramref name="ld"/> apart from offset <paramref name="off"/>)
    /// by the softmax normalisers.</summary>
    private static void ScaleRows(float[] o, int off, int ld, int n, ReadOnlySpan<float> inv)
    {
        for (int i = 0; i < inv.Length; i++)
        {
            var orow = o.AsSpan(off + i * ld, n);
            TensorPrimitives.Multiply(orow, inv[i], orow);
        }
    }
}
