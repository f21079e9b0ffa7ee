using System.Numerics.Tensors;
using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>dropout (torch.nn.functional.dropout semantics: inverted dropout, kept elements scaled by 1/(1−p)).
/// The mask comes from the caller's seeded <see cref="Rng"/>, so a run is reproducible; it is not torch's stream.</summary>
public static partial class F
{
    /// <summary>Zeroes each element with probability <paramref name="p"/> and scales the rest by 1/(1−p).
    /// p = 0 or not training returns <paramref name="x"/> itself; p = 1 gives zeros.</summary>
    public static Tensor Dropout(Tensor x, float p, bool training, Rng rng)
    {
        x.RequireFloat();
        if (!(p >= 0f && p <= 1f)) throw new ArgumentOutOfRangeException(nameof(p), $"dropout probability must be in [0, 1], got {p}");
        if (!training || p == 0f) return x;
        var mask = DropoutMask(x.Numel, p, rng);
        var xc = x.ContiguousNoGrad();
        var y = Tensor.NewResult(x.ShapeArray());
        TensorPrimitives.Multiply(xc.Data.AsSpan(xc.Offset, x.Numel), mask, y.Data.AsSpan(0, x.Numel));
        Tensor.DropCopy(xc, x);
        return Recorder.Record(y, "dropout", [x], g =>
        {
            var gc = g.Contiguous();
            var dx = Tensor.NewResult(x.ShapeArray());
            TensorPrimitives.Multiply(gc.Data.AsSpan(gc.Offset, x.Numel), mask, dx.Data.AsSpan(0, x.Numel));
            Tensor.DropCopy(gc, g);
            return [dx];
        });
    }

    /// <summary>A mask of 0 and 1/(1−p), element i kept with probability 1 − p (drawn sequentially from rng).</summary>
    internal static float[] DropoutMask(int n, float p, Rng rng)
    {
        var mask = new float[n];
        if (p >= 1f) return mask;
        float scale = 1f / (1f - p);
        // Keep when a 32-bit uniform falls below (1 − p)·2³²: two draws per generator step.
        ulong threshold = (ulong)((1.0 - p) * 4294967296.0);
        int i = 0;
        for (; i + 1 < n; i += 2)
        {
            ulong r = rng.NextUInt64();
            mask[i] = (r & 0xFFFFFFFFUL) < threshold ? scale : 0f;
            mask[i + 1] = (r >> 32) < threshold ? scale : 0f;
        }
        if (i < n) mask[i] = (rng.NextUInt64() & 0xFFFFFFFFUL) < threshold ? scale : 0f;
        return mask;
    }
}
