using System.Numerics.Tensors;
using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>Sum and mean over dims. Other reductions (max, min, argmax, var) build on <see cref="ReduceLayout"/>.</summary>
public sealed partial class Tensor
{
    public Tensor Sum() => Sum(Enumerable.Range(0, Rank).ToArray(), false);

    public Tensor Sum(int dim, bool keepDim = false) => Sum([dim], keepDim);

    public Tensor Sum(int[] dims, bool keepDim)
    {
        RequireFloat();
        var layout = ReduceLayout.Of(this, dims);
        var r = NewResult(layout.OutShape(keepDim));
        var rd = r.Data; int inner = layout.Inner;
        if (layout.ReducedIsPrefix && IsContiguous)
        {
            // Sum over leading dims of a contiguous tensor (bias gradients): accumulate rows in place.
            SumLeading(Data, Offset, inner, layout.Kept, rd);
        }
        else
        {
            var src = layout.Rows();
            var sd = src.Data; int so = src.Offset;
            ParallelRows(layout.Kept, inner, i => rd[i] = TensorPrimitives.Sum(new ReadOnlySpan<float>(sd, so + i * inner, inner)));
            layout.ReleaseRows(src);
        }
        var inShape = ShapeArray();
        return Recorder.Record(r, "sum", [this], g =>
        {
            // The reshaped and expanded views of g are let go once copied, so g's buffer can be recycled.
            var kept = g.Reshape(layout.OutShape(true));
            var wide = kept.Expand(inShape);
            var dx = wide.Contiguous();
            DropCopy(wide, dx);
            DropCopy(kept, dx);
            return [dx];
        });
    }

    private static void SumLeading(float[] src, int off, int rows, int cols, float[] dst)
    {
        Array.Clear(dst, 0, cols);
        int workers = (long)rows * cols >= (1 << 16) && cols >= 64 ? Environment.ProcessorCount : 1;
        Parallel.For(0, workers, w =>
        {
            int c0 = cols * w / workers, c1 = cols * (w + 1) / workers;
            var d = dst.AsSpan(c0, c1 - c0);
            for (int r = 0; r < rows; r++) TensorPrimitives.Add(d, new ReadOnlySpan<float>(src, off + r * cols + c0, c1 - c0), d);
        });
    }

    /// <summary>Mean of all elements; NaN for an empty tensor, as torch.mean (0/0).</summary>
    public Tensor Mean() => Sum().Div(Numel);

    public Tensor Mean(int dim, bool keepDim = false) => Mean([dim], keepDim);

    public Tensor Mean(int[] dims, bool keepDim)
    {
        var layout = ReduceLayout.Of(this, dims);
        var sum = Sum(dims, keepDim);
        var r = sum.Div(layout.Inner);
        sum.Dispose();   // division by a scalar keeps nothing of its input for the backward
        return r;
    }

    /// <summary>Sums a broadcast gradient back to <paramref name="shape"/> (the inverse of broadcasting).</summary>
    public Tensor SumTo(ReadOnlySpan<int> shape)
    {
        if (ShapeUtil.SameShape(Shape, shape)) return this;
        int lead = Rank - shape.Length;
        if (lead < 0) throw new ArgumentException($"cannot sum {ShapeString} to larger rank {ShapeUtil.Format(shape)}");
        var dims = new List<int>();
        for (int i = 0; i < Rank; i++)
            if (i < lead || (shape[i - lead] == 1 && _shape[i] != 1)) dims.Add(i);
            else if (shape[i - lead] != _shape[i]) throw new ArgumentException($"cannot sum {ShapeString} to {ShapeUtil.Format(shape)}");
        var target = shape.ToArray();
        if (dims.Count == 0) return Reshape(target);
        var sum = Sum(dims.ToArray(), true);
        var r = sum.Reshape(target);
        DropCopy(sum, r);   // r is a view holding the buffer; the keepdim tensor is not needed
        return r;
    }

    /// <summary><see cref="SumTo"/> of a temporary the caller owns (a backward's broadcast product): the temporary goes
    /// back to the pool once it is reduced, unless it already had the shape and is itself the result.</summary>
    internal Tensor SumToFree(ReadOnlySpan<int> shape)
    {
        var r = SumTo(shape);
        DropCopy(this, r);
        return r;
    }

    /// <summary>Runs body(i) for i in [0, rows), in parallel when rows·rowLength is large.</summary>
    internal static void ParallelRows(int rows, int rowLength, Action<int> body, long threshold = 1 << 15)
    {
        if ((long)rows * rowLength < threshold || rows < 2)
        {
            for (int i = 0; i < rows; i++) body(i);
            return;
        }
        int workers = Math.Min(Environment.ProcessorCount, rows);
        Parallel.For(0, workers, w =>
        {
            int s = (int)((long)rows * w / workers), e = (int)((long)rows * (w + 1) / workers);
            for (int i = s; i < e; i++) body(i);
        });
    }
}

/// <summary>A reduction's geometry: kept dims first, reduced dims last (so rows are contiguous after a copy).</summary>
internal sealed class ReduceLayout
{
    private Tensor? _permuted;
    private Tensor _x = null!;
    private int[] _perm = [];

    /// <summary>The input with kept dims first, as a view made on first use: a view holds the input's buffer until
    /// the GC takes it, so paths that never read it (sums over leading dims, Mean's element count) must not make one
    /// — else the buffer (a bias gradient's g, say) never returns to the pool.</summary>
    public Tensor Permuted
    {
        get
        {
            if (_permuted is null)
                using (GradMode.Disable()) _permuted = _x.Rank == 0 ? _x : _x.Permute(_perm);
            return _permuted;
        }
    }

    /// <summary>The input's values with kept dims first, one contiguous row of <see cref="Inner"/> values per kept
    /// position (a copy unless the permuted view already is contiguous). Give it back with <see cref="ReleaseRows"/>.</summary>
    public Tensor Rows() => Permuted.Contiguous();

    /// <summary>Drops the copy and the view made by <see cref="Rows"/> as soon as the kernel is done, so neither keeps
    /// the input's buffer (or its own) from the pool until the GC runs.</summary>
    public void ReleaseRows(Tensor rows)
    {
        if (!ReferenceEquals(rows, _permuted) && !ReferenceEquals(rows, _x)) rows.Dispose();
        Tensor.DropCopy(_permuted, _x);
        _permuted = null;
    }
    public required bool[] Reduced { get; init; }
    public required int[] InShape { get; init; }
    public int Kept { get; init; }
    public int Inner { get; init; }
    public bool ReducedIsPrefix { get; init; }

    public static ReduceLayout Of(Tensor x, int[] dims)
    {
        int rank = x.Rank;
        var red = new bool[rank];
        foreach (var d0 in dims)
        {
            int d = ShapeUtil.NormDim(d0, rank);
            if (red[d]) throw new ArgumentException($"dim {d} repeated in reduction");
            red[d] = true;
        }
        var perm = Enumerable.Range(0, rank).Where(i => !red[i]).Concat(Enumerable.Range(0, rank).Where(i => red[i])).ToArray();
        int kept = 1, inner = 1;
        for (int i = 0; i < rank; i++) if (red[i]) inner *= x.Shape[i]; else kept *= x.Shape[i];
        int nRed = red.Count(b => b);
        bool prefix = nRed > 0 && Enumerable.Range(0, nRed).All(i => red[i]) && nRed < rank;
        return new ReduceLayout { _x = x, _perm = perm, Reduced = red, InShape = x.ShapeArray(), Kept = kept, Inner = inner, ReducedIsPrefix = prefix };
    }

    public int[] OutShape(bool keepDim)
    {
        var o = new List<int>();
        for (int i = 0; i < InShape.Length; i++)
            if (!Reduced[i]) o.Add(InShape[i]);
            else if (keepDim) o.Add(1);
        return o.ToArray();
    }
}
