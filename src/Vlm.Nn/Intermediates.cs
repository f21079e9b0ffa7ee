using Vlm.Core;
using Vlm.Core.Autograd;

namespace Vlm.Nn;

/// <summary>
/// Releasing a forward's intermediates in no-grad inference. A tensor's buffer goes back to the pool when its last
/// holder disposes it, so a module that disposes each intermediate once the next op has read it runs a whole
/// encoder in a few recycled buffers instead of leaving hundreds of MB per image to the GC. While gradients are
/// recorded this does nothing: the graph keeps what its backward reads.
/// </summary>
public static class Intermediates
{
    /// <summary>Disposes <paramref name="t"/> in no-grad mode unless it is <paramref name="keep"/> (an op that may
    /// return its input, e.g. dropout in eval mode or the "linear" activation).</summary>
    public static void Free(Tensor? t, Tensor? keep = null)
    {
        if (t is null || ReferenceEquals(t, keep) || GradMode.IsEnabled) return;
        t.Dispose();
    }

    /// <summary><see cref="Free"/> for each of several intermediates (nulls skipped).</summary>
    public static void FreeAll(params ReadOnlySpan<Tensor?> ts)
    {
        foreach (var t in ts) Free(t);
    }
}
