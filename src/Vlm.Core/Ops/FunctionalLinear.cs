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
    /// epilogue when no gradient is recorded (recording keeps the pre-activation for GELU's backward).</param>
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
        // VLM_FUSION_REF=1 runs QuickGELU as its own pass (interleaved A/B timings of whole models).
        if (activation != GemmEpilogue.None && (record
            || activation == GemmEpilogue.QuickGelu && Environment.GetEnvironmentVariable("VLM_FUSION_REF") == "1"))
        {
            var pre = Linear(x, weight, bias);
            return activation switch
            {
                GemmEpilogue.Gelu => pre.Gelu(),
                GemmEpilogue.QuickGelu => pre.QuickGelu(),
                _ => throw new ArgumentOutOfRangeException(nameof(activation), $"unknown linear activation {activation}"),
            };
        }

        var xc = x.Contiguous();                  // (rows, in) in memory
        var wc = weight.Contiguous();             // (out, in)
        var bc = bias?.Contiguous();
        int rows = x.Numel / inF;
        var outShape = x.ShapeArray();
        outShape[^1] = outF;
        var y = NewResultOf(outShape);
        Gemm.SgemmBias(false, true, rows, outF, inF, xc.Data.AsSpan(xc.Offset, rows * inF), inF,
            wc.Data.AsSpan(wc.Offset, outF * inF), inF, y.Data.AsSpan(0, rows * outF), outF,
            bc is null ? default : bc.Data.AsSpan(bc.Offset, outF), activation);
        if (!record)
        {
            if (!ReferenceEquals(xc, x)) xc.Dispose();
            return y;
        }
        // Keep the contiguous copies the backward reads (they are the inputs' values).
        Recorder.Save(xc); Recorder.Save(wc);
        // The node holds the saved copies now; drop this op's own holds on private ones (recycled after backward).
        if (!ReferenceEquals(xc, x)) xc.Dispose();
        if (!ReferenceEquals(wc, weight)) wc.Dispose();
        return Recorder.Record(y, "linear", inputs, g =>
        {
            var gc = g.Contiguous();              // (rows, out)
            var gs = gc.Data.AsSpan(gc.Offset, rows * outF);
            Tensor? dx = null, dw = null, db = null;
            if (x.RequiresGrad)
            {
                dx = NewResultOf(x.ShapeArray());
                Gemm.Sgemm(false, false, rows, inF, outF, 1f, gs, outF, wc.Data.AsSpan(wc.Offset, outF * inF), inF, 0f, dx.Data.AsSpan(0, rows * inF), inF);
            }
            if (weight.RequiresGrad)
            {
                dw = NewResultOf([outF, inF]);
                Gemm.Sgemm(true, false, outF, inF, rows, 1f, gs, outF, xc.Data.AsSpan(xc.Offset, rows * inF), inF, 0f, dw.Data.AsSpan(0, outF * inF), inF);
            }
            if (bias is { RequiresGrad: true })
            {
                // Dispose the view: an undisposed view would keep g's buffer from the engine's recycling.
                using var g2 = gc.Reshape(rows, outF);
                db = g2.Sum(0);
            }
            return bias is null ? [dx, dw] : [dx, dw, db];
        });
    }

    private static Tensor NewResultOf(int[] shape) => Tensor.NewResult(shape);
}
