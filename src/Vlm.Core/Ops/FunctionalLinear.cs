using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>
/// torch.nn.functional.linear, y = x·Wᵀ + b, as one GEMM whose epilogue adds the bias (and optionally applies GELU or QuickGELU)
/// to each finished block of the output while it is in cache: no second pass over y and no temporary, which a
/// MatMul followed by Add needs. The backward is three direct products: dx = g·W, dW = gᵀ·x (already (out, in),
/// no transposed view to copy) and db = column sums of g.
/// </summary>
public static partial class F
{
    /// <param name="x">(..., in)</param>
    /// <param name="weight">(out, in)</param>
    /// <param name="bias">(out) or null</param>
    /// <param name="gelu">apply exact (erf) GELU to the result, as x.Linear(...).Gelu(); fused into the GEMM
    /// epilogue when no gradient is recorded; when recording, the GEMM writes the pre-activation (kept for the
    /// backward) and one parallel pass applies GELU, and the backward applies GELU' to g before the products.</param>
    /// <returns>(..., out)</returns>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null, bool gelu = false)
        => Linear(x, weight, bias, gelu ? GemmEpilogue.Gelu : GemmEpilogue.None);

    /// <summary>act(x·Wᵀ + b) with <paramref name="activation"/> (none, exact GELU or QuickGELU) applied in the GEMM
    /// epilogue when no gradient is recorded; recording composes Linear and the activation op (for its backward).</summary>
    /// <returns>(..., out)</returns>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias, GemmEpilogue activation)
    {
        x.RequireFloat(); weight.RequireFloat(); bias?.RequireFloat();
        if (weight.Rank != 2) throw new ArgumentException($"linear weight must be (out, in), got {weight.ShapeString}");
        int outF = weight.Size(0), inF = weight.Size(1);
        if (x.Rank == 0 || x.Size(-1) != inF)
            throw new ArgumentException($"linear: input {x.ShapeString} does not end in in_features={inF} (weight {weight.ShapeString})");
        if (bias != null && (bias.Rank != 1 || bias.Size(0) != outF))
            throw new ArgumentException($"linear bias must be ({outF}), got {bias.ShapeString}");

        if (!Enum.IsDefined(activation)) throw new ArgumentOutOfRangeException(nameof(activation), $"unknown linear activation {activation}");
        Tensor[] inputs = bias is null ? [x, weight] : [x, weight, bias];
        bool record = Recorder.ShouldRecord(inputs);
        // QuickGELU when recording composes Linear and the op (its backward reads the pre-activation); GELU has a fused
        // recording node below. VLM_FUSION_REF=1 runs QuickGELU as its own pass (interleaved A/B timings of whole models).
        if (activation == GemmEpilogue.QuickGelu && (record || Environment.GetEnvironmentVariable("VLM_FUSION_REF") == "1"))
        {
            var pre0 = Linear(x, weight, bias);
            var act = pre0.QuickGelu();
            pre0.Dispose();   // when recording, the activation's node holds it until its backward has run
            return act;
        }
        bool gelu = activation == GemmEpilogue.Gelu;

        // Private copies are not recorded (this op records its own node against the inputs): a recorded clone whose
        // backward never runs would hold its buffers until the GC.
        var xc = x.ContiguousNoGrad();            // (rows, in) in memory
        var wc = weight.ContiguousNoGrad();       // (out, in)
        var bc = bias?.ContiguousNoGrad();
        int rows = x.Numel / inF;
        var outShape = x.ShapeArray();
        outShape[^1] = outF;
        var y = NewResultOf(outShape);
        // Recording GELU needs the pre-activation for the backward: the GEMM writes it (bias in its epilogue), then one
        // parallel vectorised pass writes GELU of it — the same values as Linear(...).Gelu(), without a second op.
        var pre = gelu && record ? NewResultOf(outShape) : null;
        bool geluDone = false;
        // Inference scope: the weight packed once (PackedWeights) instead of on every call; same bits.
        var packed = record ? null : PackedWeights.Get(weight);
        if (packed != null)
            GemmManaged.SgemmBiasPacked(rows, xc.Data.AsSpan(xc.Offset, rows * inF), inF, packed, y.Data.AsSpan(0, rows * outF), outF,
                bc is null ? default : bc.Data.AsSpan(bc.Offset, outF), activation, Environment.ProcessorCount);
        else if (Shared(rows, inF, outF, backward: false))
            geluDone = ForwardShared(rows, inF, outF, xc, wc, bc, pre ?? y, pre is null ? activation : GemmEpilogue.None, pre is null ? null : y);
        else
            Gemm.SgemmBias(false, true, rows, outF, inF, xc.Data.AsSpan(xc.Offset, rows * inF), inF,
                wc.Data.AsSpan(wc.Offset, outF * inF), inF, (pre ?? y).Data.AsSpan(0, rows * outF), outF,
                bc is null ? default : bc.Data.AsSpan(bc.Offset, outF), pre is null ? activation : GemmEpilogue.None);
        if (pre != null && !geluDone)
        {
            float[] pd = pre.Data, yd = y.Data;
            Tensor.ParallelSpans(rows * outF, (s, e) => FastMath.Gelu(pd.AsSpan(s, e - s), yd.AsSpan(s, e - s)), Tensor.ParallelTranscendental);
        }
        if (!record)
        {
            Tensor.DropCopy(xc, x);
            return y;
        }
        // Keep the contiguous copies the backward reads (they are the inputs' values).
        Recorder.Save(xc); Recorder.Save(wc);
        if (pre != null) Recorder.Save(pre);
        // The node holds the saved copies now; drop this op's own holds on private ones (recycled after backward).
        Tensor.DropCopy(xc, x);
        Tensor.DropCopy(wc, weight);
        pre?.Dispose();
        return Recorder.Record(y, pre is null ? "linear" : "linear_gelu", inputs, g =>
        {
            if (Shared(rows, inF, outF, backward: true))
                return BackwardShared(g, xc, wc, pre, rows, inF, outF, x.RequiresGrad, weight.RequiresGrad, bias is { RequiresGrad: true }, bias is not null);
            // With GELU, the gradient of the pre-activation (one fused pass) is what the three products read.
            var gc = pre is null ? g.Contiguous() : Tensor.ZipKernel(pre, g, FastMath.GeluBackward); // (rows, out)
            float[] gd = gc.Data; int go = gc.Offset;
            Tensor? dx = x.RequiresGrad ? NewResultOf(x.ShapeArray()) : null;
            Tensor? dw = weight.RequiresGrad ? NewResultOf([outF, inF]) : null;
            Tensor? db = null;
            void Dx(bool parallel) => Gemm.Sgemm(false, false, rows, inF, outF, 1f, gd.AsSpan(go, rows * outF), outF,
                wc.Data.AsSpan(wc.Offset, outF * inF), inF, 0f, dx!.Data.AsSpan(0, rows * inF), inF, parallel);
            void Dw(bool parallel) => Gemm.Sgemm(true, false, outF, inF, rows, 1f, gd.AsSpan(go, rows * outF), outF,
                xc.Data.AsSpan(xc.Offset, rows * inF), inF, 0f, dw!.Data.AsSpan(0, outF * inF), inF, parallel);
            if (dx != null && dw != null && SideBySide(rows, inF, outF))
            {
                if (Profiler.Enabled)
                {
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    var busy = new long[2];
                    Parallel.Invoke(() => { Dx(false); busy[0] = System.Diagnostics.Stopwatch.GetTimestamp() - t0; },
                        () => { Dw(false); busy[1] = System.Diagnostics.Stopwatch.GetTimestamp() - t0; });
                    Profiler.AddIdle("linear backward dx|dW (reference)", System.Diagnostics.Stopwatch.GetTimestamp() - t0, busy);
                }
                else
                {
                    Parallel.Invoke(() => Dx(false), () => Dw(false));
                }
            }
            else
            {
                if (dx != null) Dx(true);
                if (dw != null) Dw(true);
            }
            if (bias is { RequiresGrad: true })
            {
                // Dispose the view: an undisposed view would keep g's buffer from the engine's recycling.
                using var g2 = gc.Reshape(rows, outF);
                db = g2.Sum(0);
            }
            // A private copy (contiguous or GELU'-scaled) goes back to the pool now rather than to the GC.
            Tensor.DropCopy(gc, g);
            return bias is null ? [dx, dw] : [dx, dw, db];
        });
    }

    /// <summary>VLM_LINEAR_SIDE_BY_SIDE=0 runs dx and dW one after the other, each split across the cores (comparisons).</summary>
    private static readonly bool SideBySideEnabled = Environment.GetEnvironmentVariable("VLM_LINEAR_SIDE_BY_SIDE") != "0";

    /// <summary>On two cores, dx = g·W and dW = gᵀ·x (equal flops) run side by side, one single-threaded product per
    /// core, instead of one after the other with each product split across both: every operand is then read and
    /// packed by one thread instead of by each, and there is one fork/join instead of two. With more cores a
    /// product split across all of them is the better use; small products stay serial.</summary>
    private static bool SideBySide(int rows, int inF, int outF) =>
        SideBySideEnabled && Environment.ProcessorCount == 2 && 2L * rows * inF * outF >= 1L << 24;

    /// <summary>Tests pin the path here (true: shared column pieces even for tiny shapes; false: the reference
    /// path) for this flow only; null leaves the choice to <see cref="Shared"/>.</summary>
    internal static readonly AsyncLocal<bool?> ForceShared = new();

    /// <summary>
    /// Runs the Linear's products as column pieces that the cores pull from a shared counter (work sharing, see
    /// <see cref="WorkShare"/>) instead of one product split statically in two (forward) or dx and dW side by side
    /// (backward): on the VM one vCPU is often slower than the other, and a static split leaves the faster one idle
    /// at the join. Each piece is a single-threaded managed GEMM on sub-spans. Taken on more than one core with the
    /// managed backend for products of at least 16 MFLOP; <c>VLM_LINEAR_SHARE=0</c> (read per call) keeps the
    /// reference path (interleaved A/B timings).
    /// </summary>
    private static bool Shared(int rows, int inF, int outF, bool backward)
    {
        if (ForceShared.Value is bool forced) return forced;
        var v = Environment.GetEnvironmentVariable("VLM_LINEAR_SHARE");
        if (v == "0" || v == (backward ? "fwd" : "bwd")) return false;
        // The forward's pieces measured 1.03× the static split on the MLP block (in-process A/B, 25 rounds), so the
        // forward keeps the GEMM's own split unless asked (VLM_LINEAR_SHARE=fwd or all).
        if (!backward && v != "fwd" && v != "all") return false;
        return Environment.ProcessorCount > 1 && Gemm.Effective == GemmBackend.Managed && 2L * rows * inF * outF >= 1L << 24;
    }

    /// <summary>The pieces of an m×n product: whole 512-column blocks, the last block cut by rows.</summary>
    private static List<(int c0, int w, int r0, int r1)> Plan(int m, int n) => WorkShare.Blocks(m, n);

    /// <summary>y[:, c0..c0+w] = act(x·W[c0..c0+w]ᵀ + b[c0..c0+w]) per column piece (W's rows are contiguous, so a
    /// piece packs only its own rows of W; x is read in place). With <paramref name="geluOut"/>, target receives the
    /// pre-activation and each piece writes GELU of its block to geluOut right after its GEMM, while the block is
    /// still in L3 (when out % 8 == 0, so the vector/scalar split of the GELU kernel, and so every value, is the
    /// same as one pass over the whole tensor); returns whether it did.</summary>
    private static bool ForwardShared(int rows, int inF, int outF, Tensor xc, Tensor wc, Tensor? bc, Tensor target,
        GemmEpilogue act, Tensor? geluOut)
    {
        float[] xd = xc.Data, wd = wc.Data, td = target.Data;
        int xo = xc.Offset, wo = wc.Offset;
        float[]? bd = bc?.Data; int bo = bc?.Offset ?? 0;
        float[]? gd = geluOut?.Data;
        bool geluPieces = gd != null && outF % 8 == 0;
        var pieces = Plan(rows, outF);
        WorkShare.Run(pieces.Count, i =>
        {
            var (c0, w, r0, r1) = pieces[i];
            int m = r1 - r0;
            Gemm.SgemmBias(false, true, m, w, inF, xd.AsSpan(xo + r0 * inF, m * inF), inF, wd.AsSpan(wo + c0 * inF, w * inF), inF,
                td.AsSpan(r0 * outF + c0, (m - 1) * outF + w), outF, bd is null ? default : bd.AsSpan(bo + c0, w), act, parallel: false);
            if (geluPieces)
                for (int r = r0; r < r1; r++) FastMath.Gelu(td.AsSpan(r * outF + c0, w), gd.AsSpan(r * outF + c0, w));
        }, Environment.ProcessorCount, "linear forward pieces (shared)");
        return geluPieces;
    }

    /// <summary>
    /// The backward on shared pieces. Phase 1 (rows split statically over the cores, so the bias gradient's partial
    /// sums combine in a fixed order): one pass over g writes GELU'(pre)·g (linear_gelu), its transpose gT (outF, rows)
    /// and the column sums db. Phase 2: dx = gc·W and dW = gT·x, both (·, in), cut into column pieces — a piece of dx
    /// packs only its columns of W, a piece of dW only its columns of x, both read their A (gc, gT) in place, so no
    /// packing is repeated — largest first, dx and dW alternating, pulled by whichever core is free.
    /// </summary>
    private static Tensor?[] BackwardShared(Tensor g, Tensor xc, Tensor wc, Tensor? pre, int rows, int inF, int outF,
        bool needDx, bool needDw, bool needDb, bool hasBias)
    {
        var gIn = g.Contiguous();                                           // (rows, out)
        var gc = pre is null ? gIn : Tensor.NewResult(gIn.ShapeArray());    // GELU'(pre)·g
        var gT = needDw ? Tensor.NewResult([outF, rows]) : null;            // (out, rows)
        var db = needDb ? Tensor.NewResult([outF], zero: true) : null;
        if (pre != null || gT != null || db != null)
        {
            int workers = rows >= 64 ? Environment.ProcessorCount : 1;
            float[][] partial = new float[workers][];
            if (db != null)
            {
                partial[0] = db.Data;
                for (int w = 1; w < workers; w++) partial[w] = new float[outF];
            }
            float[] gd = gIn.Data, gcd = gc.Data; int go = gIn.Offset, gco = gc.Offset;
            float[]? pd = pre?.Data, td = gT?.Data;
            void Part(int w)
            {
                int r0 = w == 0 ? 0 : (int)((long)rows * w / workers) & ~7;
                int r1 = w == workers - 1 ? rows : (int)((long)rows * (w + 1) / workers) & ~7;
                LinearGradKernels.Prep(gd.AsSpan(go, rows * outF), pd is null ? default : pd.AsSpan(0, rows * outF),
                    pd is null ? default : gcd.AsSpan(gco, rows * outF), outF, r0, r1,
                    td is null ? default : td.AsSpan(0, outF * rows), rows, db is null ? default : partial[w].AsSpan(0, outF));
            }
            if (workers == 1) Part(0);
            else Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, Part);
            if (db != null)
                for (int w = 1; w < workers; w++) System.Numerics.Tensors.TensorPrimitives.Add(db.Data.AsSpan(0, outF), partial[w], db.Data.AsSpan(0, outF));
        }
        Tensor? dx = needDx ? Tensor.NewResult(xc.ShapeArray()) : null;    // (..., in)
        Tensor? dw = needDw ? Tensor.NewResult([outF, inF]) : null;
        // dx (rows × in) and dW (out × in) pieces, largest first (stable: the two products alternate).
        var work = new List<(bool isDx, int c0, int w, int r0, int r1)>();
        if (dx != null) work.AddRange(Plan(rows, inF).Select(p => (true, p.c0, p.w, p.r0, p.r1)));
        if (dw != null) work.AddRange(Plan(outF, inF).Select(p => (false, p.c0, p.w, p.r0, p.r1)));
        work = [.. work.Select((p, i) => (p, i)).OrderByDescending(t => (long)t.p.w * (t.p.r1 - t.p.r0) * (t.p.isDx ? outF : rows))
            .ThenBy(t => t.p.isDx ? 0 : 1).ThenBy(t => t.i).Select(t => t.p)];
        {
            float[] gcd = gc.Data, wd = wc.Data, xd = xc.Data; int gco = gc.Offset, wo = wc.Offset, xo = xc.Offset;
            float[]? td = gT?.Data, dxd = dx?.Data, dwd = dw?.Data;
            WorkShare.Run(work.Count, i =>
            {
                var (isDx, c0, w, r0, r1) = work[i];
                int m = r1 - r0;
                if (isDx)
                    Gemm.Sgemm(false, false, m, w, outF, 1f, gcd.AsSpan(gco + r0 * outF, m * outF), outF,
                        wd.AsSpan(wo + c0, (outF - 1) * inF + w), inF, 0f, dxd.AsSpan(r0 * inF + c0, (m - 1) * inF + w), inF, parallel: false);
                else
                    Gemm.Sgemm(false, false, m, w, rows, 1f, td.AsSpan(r0 * rows, m * rows), rows,
                        xd.AsSpan(xo + c0, (rows - 1) * inF + w), inF, 0f, dwd.AsSpan(r0 * inF + c0, (m - 1) * inF + w), inF, parallel: false);
            }, Environment.ProcessorCount, "linear backward pieces (shared)");
        }
        // Private buffers go back to the pool now rather than to the GC.
        gT?.Dispose();
        Tensor.DropCopy(gc, gIn);
        Tensor.DropCopy(gIn, g);
        return hasBias ? [dx, dw, db] : [dx, dw];
    }

    private static Tensor NewResultOf(int[] shape) => Tensor.NewResult(shape);
}
