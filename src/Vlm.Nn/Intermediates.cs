using Vlm.Core;
using Vlm.Core.Autograd;

namespace Vlm.Nn;

/// <summary>
/// Releasing a forward's intermediates. A tensor's buffer goes back to the pool when its last holder disposes it, so
/// a module that disposes each intermediate once the next op has read it runs a whole encoder in a few recycled
/// buffers instead of leaving hundreds of MB per image to the GC. While gradients are recorded this is just as safe:
/// each node holds the buffers its backward reads and lets go of them once that backward has run, so after
/// <c>Backward()</c> the step's activations are back in the pool for the next step's forward instead of waiting for
/// the GC (and the next step page-faulting fresh memory). As in torch without retain_graph, a second backward through
/// the same graph then fails, with a clear error.
/// </summary>
public static class Intermediates
{
    /// <summary><c>VLM_FREE_RECORDED=0</c> leaves intermediates alone while gradients are recorded (the graph's tensors
    /// then go to the GC after backward; for comparisons).</summary>
    private static readonly bool FreeRecorded = Environment.GetEnvironmentVariable("VLM_FREE_RECORDED") != "0";

    /// <summary>Disposes <paramref name="t"/> unless it is <paramref name="keep"/> (an op that may return its input,
    /// e.g. dropout in eval mode or the "linear" activation).</summary>
    public static void Free(Tensor? t, Tensor? keep = null)
    {
        if (t is null || ReferenceEquals(t, keep) || (GradMode.IsEnabled && !FreeRecorded)) return;
        t.Dispose();
    }

    /// <summary><see cref="Free"/> for each of several intermediates (nulls skipped).</summary>
    public static void FreeAll(params ReadOnlySpan<Tensor?> ts)
    {
        foreach (var t in ts) Free(t);
    }
}
