using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>Sorting along a dim (torch.sort / topk / argsort). Stable: equal values keep their order; NaN sorts
/// above every number (last ascending, first descending), like torch. Values are gathered from the input, so
/// the gradient flows back to the selected positions.</summary>
public sealed partial class Tensor
{
    public (Tensor Values, Tensor Indices) Sort(int dim = -1, bool descending = false)
    {
        var idx = SortIndices(dim, descending, int.MaxValue);
        return (Gather(ShapeUtil.NormDim(dim, Rank), idx), idx);
    }

    /// <summary>Indices (int64) that sort along <paramref name="dim"/>.</summary>
    public Tensor Argsort(int dim = -1, bool descending = false) => SortIndices(dim, descending, int.MaxValue);

    /// <summary>The k largest (or smallest) entries along <paramref name="dim"/>, in sorted order; ties keep the lower index.</summary>
    public (Tensor Values, Tensor Indices) TopK(int k, int dim = -1, bool largest = true)
    {
        int d = ShapeUtil.NormDim(dim, Math.Max(Rank, 1));
        int n = Rank == 0 ? 1 : _shape[d];
        if (k < 0 || k > n) throw new ArgumentOutOfRangeException(nameof(k), $"topk: k = {k} out of range for dim {d} of size {n} in {ShapeString}");
        var idx = SortIndices(dim, largest, k);
        return (Gather(d, idx), idx);
    }

    private Tensor SortIndices(int dim, bool descending, int k)
    {
        RequireFloat();
        if (Rank == 0) throw new ArgumentException("sort/topk need at least one dim; reshape a scalar to [1] first");
        int d = ShapeUtil.NormDim(dim, Rank);
        int n = _shape[d];
        k = Math.Min(k, n);
        var (outer, inner) = OuterInner(_shape, d);
        var src = ContiguousNoGrad();
        var sd = src.Data; int so = src.Offset;
        var outShape = ShapeArray(); outShape[d] = k;
        var r = NewResult(outShape, DType.Int64);
        var rd = r.Storage.I64!;
        ParallelRows(outer * inner, n * 8, row =>
        {
            int o = row / inner, i = row % inner;
            var vals = new float[n]; var order = new int[n];
            for (int j = 0; j < n; j++) { vals[j] = sd[so + (o * n + j) * inner + i]; order[j] = j; }
            Comparison<int> cmp = descending
                ? (a, b) => { int c = CompareNaNHigh(vals[b], vals[a]); return c != 0 ? c : a.CompareTo(b); }
                : (a, b) => { int c = CompareNaNHigh(vals[a], vals[b]); return c != 0 ? c : a.CompareTo(b); };
            Array.Sort(order, cmp);
            for (int j = 0; j < k; j++) rd[(o * k + j) * inner + i] = order[j];
        });
        DropCopy(src, this);
        return r;
    }

    /// <summary>Total order with NaN above +inf.</summary>
    private static int CompareNaNHigh(float a, float b)
    {
        bool na = float.IsNaN(a), nb = float.IsNaN(b);
        if (na || nb) return na == nb ? 0 : na ? 1 : -1;
        return a < b ? -1 : a > b ? 1 : 0;
    }
}
