namespace Vlm.Core.Kernels;

/// <summary>
/// Work sharing for a handful of coarse, independent pieces (column blocks of the Linear products): every core pulls
/// the next piece from one shared counter until none is left, so a core that runs faster (the VM's vCPUs often
/// differ by 10–30% within a product) takes more pieces instead of idling at the join. Pieces are listed largest
/// first, so the last ones to finish are short and the cores finish close together (guided self-scheduling).
/// </summary>
internal static class WorkShare
{
    /// <summary>Runs body(0..count-1), each index once, on up to <paramref name="workers"/> threads (the caller
    /// is one of them). Pieces must write disjoint outputs; the result does not depend on which thread ran which.</summary>
    public static void Run(int count, Action<int> body, int workers)
    {
        workers = Math.Min(workers, count);
        if (workers <= 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        int next = -1;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count) body(i);
        });
    }

    /// <summary>Cuts [0, n) into column pieces (c0, width) for guided scheduling: each piece takes about a third of
    /// what is left, rounded up to whole 32-wide GEMM panels and kept between <paramref name="min"/> and
    /// <paramref name="max"/> columns (max = the GEMM's column block, so a piece never splits one of its B blocks;
    /// min keeps the per-piece re-read of A small). 768 → 256, 192, 128, 64, 64, 64.</summary>
    public static List<(int c0, int w)> Pieces(int n, int min = 64, int max = 512, int divisor = 3)
    {
        var r = new List<(int, int)>();
        for (int c0 = 0; c0 < n;)
        {
            int rem = n - c0;
            int w = Math.Clamp((rem / divisor + 31) / 32 * 32, min, max);
            if (w >= rem) w = rem;
            r.Add((c0, w));
            c0 += w;
        }
        return r;
    }
}
