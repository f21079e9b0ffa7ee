using System.Numerics.Tensors;

namespace Vlm.Core.Kernels;

/// <summary>Vectorised transcendental kernels used by softmax, GELU and friends.</summary>
public static class FastMath
{
    /// <summary>d[i] = exp(x[i]).</summary>
    public static void Exp(ReadOnlySpan<float> x, Span<float> d) => TensorPrimitives.Exp(x, d);
}
