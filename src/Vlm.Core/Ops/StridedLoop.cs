namespace Vlm.Core.Ops;

/// <summary>
/// Iteration over up to three strided operands of one (broadcast) shape. Dimensions that are
/// contiguous for every operand are merged, so the inner loop is as long as possible; the inner
/// callback gets (offsetOut, offsetA, offsetB, length) plus the inner strides.
/// </summary>
internal static class StridedLoop
{
    internal delegate void Inner(int oOut, int oA, int oB, int n, int sOut, int sA, int sB);

    /// <summary>Collapses dims where every stride set is "row-major continuous" across the boundary.</summary>
    internal static (int[] shape, int[][] strides) Coalesce(int[] shape, params int[][] strides)
    {
        var sh = new List<int>();
        var st = strides.Select(_ => new List<int>()).ToArray();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            if (sh.Count > 0)
            {
                bool merge = true;
                for (int s = 0; s < strides.Length; s++)
                    if (st[s][^1] != strides[s][d] * shape[d]) { merge = false; break; }
                if (merge)
                {
                    sh[^1] *= shape[d];
                    for (int s = 0; s < strides.Length; s++) st[s][^1] = strides[s][d];
                    continue;
                }
            }
            sh.Add(shape[d]);
            for (int s = 0; s < strides.Length; s++) st[s].Add(strides[s][d]);
        }
        if (sh.Count == 0)
        {
            sh.Add(1);
            foreach (var l in st) l.Add(1);
        }
        return (sh.ToArray(), st.Select(l => l.ToArray()).ToArray());
    }

    /// <summary>Runs <paramref name="inner"/> over every row (all dims but the last, after coalescing).
    /// Rows are split across threads when the total work is large.</summary>
    internal static void Run(int[] shape, int[] sOut, int offOut, int[] sA, int offA, int[] sB, int offB, Inner inner, int parallelThreshold = 1 << 15)
    {
        var (sh, st) = Coalesce(shape, sOut, sA, sB);
        int r = sh.Length;
        int n = sh[r - 1];
        int rows = 1;
        for (int d = 0; d < r - 1; d++) rows *= sh[d];
        int so = st[0][r - 1], sa = st[1][r - 1], sb = st[2][r - 1];

        void DoRows(int start, int end)
        {
            var idx = new int[Math.Max(r - 1, 0)];
            int rem = start;
            for (int d = r - 2; d >= 0; d--) { idx[d] = rem % sh[d]; rem /= sh[d]; }
            int o = offOut, a = offA, b = offB;
            for (int d = 0; d < r - 1; d++) { o += idx[d] * st[0][d]; a += idx[d] * st[1][d]; b += idx[d] * st[2][d]; }
            for (int row = start; row < end; row++)
            {
                inner(o, a, b, n, so, sa, sb);
                for (int d = r - 2; d >= 0; d--)
                {
                    idx[d]++;
                    o += st[0][d]; a += st[1][d]; b += st[2][d];
                    if (idx[d] < sh[d]) break;
                    o -= st[0][d] * sh[d]; a -= st[1][d] * sh[d]; b -= st[2][d] * sh[d];
                    idx[d] = 0;
                }
            }
        }

        long total = (long)rows * n;
        if (total == 0) return;   // a 0-size dim: no rows to visit (and the index arithmetic would divide by it)
        int workers = total >= parallelThreshold && rows > 1 ? Math.Min(Environment.ProcessorCount, rows) : 1;
        if (workers <= 1) { DoRows(0, rows); return; }
        Parallel.For(0, workers, w => DoRows((int)((long)rows * w / workers), (int)((long)rows * (w + 1) / workers)));
    }
}
