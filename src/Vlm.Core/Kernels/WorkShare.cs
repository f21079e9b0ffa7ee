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
    public static void Run(int count, Action<int> body, int workers, string? profileName = null)
    {
        workers = Math.Min(workers, count);
        if (workers <= 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        int next = -1;
        bool profile = Autograd.Profiler.Enabled && profileName != null;
        long t0 = profile ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        var busy = profile ? new long[workers] : null;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count) body(i);
            if (busy != null) busy[w] = System.Diagnostics.Stopwatch.GetTimestamp() - t0;
        });
        if (busy != null) Autograd.Profiler.AddIdle(profileName!, System.Diagnostics.Stopwatch.GetTimestamp() - t0, busy);
    }

    /// <summary>
    /// Cuts an m×n product into pieces (c0, w, r0, r1) that repeat no GEMM packing and re-read no operand more than
    /// a single call would: whole column blocks of <paramref name="nc"/> (the GEMM's own column block, so each piece
    /// packs exactly the B block the single call would) for all but the last block, then the last block cut by rows
    /// into halving pieces (multiples of 24 rows, the GEMM's row block; at least <paramref name="minRows"/>), which
    /// only repack that narrow B block. The small row pieces come last, so the cores finish together.
    /// 1576×768 → [0,512) all rows, then [512,768) × rows 792, 408, 192, 184.
    /// </summary>
    public static List<(int c0, int w, int r0, int r1)> Blocks(int m, int n, int nc = 512, int minRows = 96)
    {
        var r = new List<(int, int, int, int)>();
        if (m <= 0 || n <= 0) return r;
        int last = (n - 1) / nc * nc;
        for (int c0 = 0; c0 < last; c0 += nc) r.Add((c0, nc, 0, m));
        for (int r0 = 0; r0 < m;)
        {
            int rem = m - r0;
            int h = rem <= 2 * minRows ? rem : Math.Min(rem, (rem / 2 + 23) / 24 * 24);
            r.Add((last, n - last, r0, r0 + h));
            r0 += h;
        }
        return r;
    }
}
