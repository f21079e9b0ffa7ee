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
            if (!record) pre0.Dispose();
            return act;
        }
        bool gelu = activation == GemmEpilogue.Gelu;

        var xc = x.Contiguous();                  // (rows, in) in memory
        var wc = weight.Contiguous();             // (out, in)
        var bc = bias?.Contiguous();
        int rows = x.Numel / inF;
        var outShape = x.ShapeArray();
        outShape[^1] = outF;
        var y = NewResultOf(outShape);
        // Recording GELU needs the pre-activation for the backward: the GEMM writes it (bias in its epilogue), then one
        // parallel vectorised pass writes GELU of it — the same values as Linear(...).Gelu(), without a second op.
        var pre = gelu && record ? NewResultOf(outShape) : null;
        Gemm.SgemmBias(false, true, rows, outF, inF, xc.Data.AsSpan(xc.Offset, rows * inF), inF,
            wc.Data.AsSpan(wc.Offset, outF * inF), inF, (pre ?? y).Data.AsSpan(0, rows * outF), outF,
            bc is null ? default : bc.Data.AsSpan(bc.Offset, outF), pre is null ? activation : GemmEpilogue.None);
        if (pre != null)
        {
            float[] pd = pre.Data, yd = y.Data;
            Tensor.ParallelSpans(rows * outF, (s, e) => FastMath.Gelu(pd.AsSpan(s, e - s), yd.AsSpan(s, e - s)), Tensor.ParallelTranscendental);
        }
        if (!record)
        {
            if (!ReferenceEquals(xc, x)) xc.Dispose();
            return y;
        }
        // Keep the contiguous copies the backward reads (they are the inputs' values).
        Recorder.Save(xc); Recorder.Save(wc);
        if (pre != null) Recorder.Save(pre);
        // The node holds the saved copies now; drop this op's own holds on private ones (recycled after backward).
        if (!ReferenceEquals(xc, x)) xc.Dispose();
        if (!ReferenceEquals(wc, weight)) wc.Dispose();
        pre?.Dispose();
        return Recorder.Record(y, pre is null ? "linear" : "linear_gelu", inputs, g =>
        {
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
                Parallel.Invoke(() => Dx(false), () => Dw(false));
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
            if (!ReferenceEquals(gc, g)) gc.Dispose();
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

    private static Tensor NewResultOf(int[] shape) => Tensor.NewResult(shape);
}
