using Vlm.Core.Autograd;
using Vlm.Core.Ops;

namespace Vlm.Core;

/// <summary>Indexing ops: index_select, embedding lookup, gather / scatter_add, masked_fill, where, clamp.
/// Index tensors are int64 or int32; every index is range-checked with an error naming it.</summary>
public sealed partial class Tensor
{
    /// <summary>The storage array, whatever its element type (for Array.Copy across dtypes' kernels).</summary>
    internal Array RawArray => DType switch
    {
        DType.Float32 => Data,
        DType.Int64 => Storage.I64!,
        DType.Int32 => Storage.I32!,
        _ => Storage.U8!,
    };

    /// <summary>An index tensor's values as int64, in row-major order.</summary>
    internal static long[] ReadIndices(Tensor index, string op)
    {
        if (index.DType is not (DType.Int64 or DType.Int32))
            throw new ArgumentException($"{op}: index tensor {index.Name ?? index.ShapeString} must be int64 or int32, got {index.DType}");
        var c = index.IsContiguous ? index : index.Clone();
        if (c.DType == DType.Int64) return c.SpanI64.ToArray();
        var s = c.SpanI32; var r = new long[s.Length];
        for (int i = 0; i < r.Length; i++) r[i] = s[i];
        return r;
    }

    private static (int outer, int inner) OuterInner(ReadOnlySpan<int> shape, int d)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < d; i++) outer *= shape[i];
        for (int i = d + 1; i < shape.Length; i++) inner *= shape[i];
        return (outer, inner);
    }

    /// <summary>torch.index_select: entries <paramref name="index"/> (1-D) of dimension <paramref name="dim"/>.</summary>
    public Tensor IndexSelect(int dim, Tensor index)
    {
        if (index.Rank > 1) throw new ArgumentException($"index_select: index must be 0-D or 1-D, got shape {index.ShapeString}");
        int d = ShapeUtil.NormDim(dim, Rank);
        var ids = ReadIndices(index, "index_select");
        int n = _shape[d];
        for (int j = 0; j < ids.Length; j++)
            if ((ulong)ids[j] >= (ulong)n)
                throw new IndexOutOfRangeException($"index_select: index {ids[j]} at position {j} is out of range [0, {n}) for dim {d} of tensor {Name ?? ShapeString}");
        var src = ContiguousNoGrad();
        var shape = ShapeArray(); shape[d] = ids.Length;
        var r = NewResult(shape, DType);
        var (outer, inner) = OuterInner(_shape, d);
        var sa = src.RawArray; var ra = r.RawArray; int so = src.Offset;
        for (int o = 0; o < outer; o++)
            for (int j = 0; j < ids.Length; j++)
                Array.Copy(sa, so + (o * n + (int)ids[j]) * inner, ra, (o * ids.Length + j) * inner, inner);
        // The backward reads only the indices: a private contiguous copy goes back to the pool now.
        DropCopy(src, this);
        var inShape = ShapeArray();
        return Recorder.Record(r, "index_select", [this], g =>
        {
            var gc = g.ContiguousNoGrad();
            var gx = NewResult(inShape, zero: true);
            var gd = gc.Data; int go = gc.Offset; var xd = gx.Data;
            for (int o = 0; o < outer; o++)
                for (int j = 0; j < ids.Length; j++)
                {
                    int dst = (o * n + (int)ids[j]) * inner, srcO = go + (o * ids.Length + j) * inner;
                    for (int i = 0; i < inner; i++) xd[dst + i] += gd[srcO + i];
                }
            DropCopy(gc, g);
            return [gx];
        });
    }

    /// <summary>Embedding lookup: rows of <paramref name="weight"/> (V, D) for ids of any shape → ids.shape + (D).
    /// The backward accumulates into the rows used (except <paramref name="paddingIdx"/>, like nn.Embedding).</summary>
    public static Tensor Embedding(Tensor weight, Tensor ids, int? paddingIdx = null)
    {
        if (weight.Rank != 2) throw new ArgumentException($"embedding: weight {weight.Name ?? ""} must be 2-D (num_embeddings, dim), got {weight.ShapeString}");
        weight.RequireFloat();
        var idv = ReadIndices(ids, "embedding");
        int vocab = weight.Shape[0], dim = weight.Shape[1];
        for (int i = 0; i < idv.Length; i++)
            if ((ulong)idv[i] >= (ulong)vocab)
                throw new IndexOutOfRangeException($"embedding: id {idv[i]} at flat position {i} of ids {ids.ShapeString} is out of range [0, {vocab}) of weight {weight.Name ?? weight.ShapeString}");
        var w = weight.ContiguousNoGrad();
        var shape = ids.ShapeArray().Append(dim).ToArray();
        var r = NewResult(shape);
        var wd = w.Data; int wo = w.Offset; var rd = r.Data;
        ParallelRows(idv.Length, dim, i => Array.Copy(wd, wo + (int)idv[i] * dim, rd, i * dim, dim), 1 << 16);
        DropCopy(w, weight);
        return Recorder.Record(r, "embedding", [weight], g =>
        {
            var gc = g.ContiguousNoGrad();
            var gw = NewResult([vocab, dim], zero: true);
            var gd = gc.Data; int go = gc.Offset; var wg = gw.Data;
            for (int i = 0; i < idv.Length; i++)
            {
                if (paddingIdx is int p && idv[i] == p) continue;
                var row = wg.AsSpan((int)idv[i] * dim, dim);
                System.Numerics.Tensors.TensorPrimitives.Add(row, new ReadOnlySpan<float>(gd, go + i * dim, dim), row);
            }
            DropCopy(gc, g);
            return [gw];
        });
    }

    /// <summary>Visits every element of <paramref name="index"/> (row-major), giving its flat position, its value and
    /// the storage offsets in <paramref name="x"/> (with dim replaced by the value) and in <paramref name="other"/>.</summary>
    private static void ForEachGather(Tensor x, Tensor index, int d, string op, Tensor? other, Action<int, int, int> body)
    {
        if (index.Rank != x.Rank) throw new ArgumentException($"{op}: index has shape {index.ShapeString}, input has {x.ShapeString}: ranks must match");
        for (int i = 0; i < x.Rank; i++)
            if (i != d && index.Shape[i] > x.Shape[i])
                throw new ArgumentException($"{op}: index shape {index.ShapeString} is larger than input {x.ShapeString} in dim {i}");
        if (other != null)
            for (int i = 0; i < x.Rank; i++)
                if (index.Shape[i] > other.Shape[i])
                    throw new ArgumentException($"{op}: index shape {index.ShapeString} is larger than src {other.ShapeString} in dim {i}");
        var ids = ReadIndices(index, op);
        int rank = index.Rank, n = x.Shape[d];
        var pos = new int[rank];
        var xs = x.ShapeArrayStrides(); var os = other?.ShapeArrayStrides() ?? [];
        for (int f = 0; f < ids.Length; f++)
        {
            long v = ids[f];
            if (v < 0 || v >= n)
                throw new IndexOutOfRangeException($"{op}: index {v} at flat position {f} is out of range [0, {n}) for dim {d} of {x.ShapeString}");
            int xo = x.Offset, oo = other?.Offset ?? 0;
            for (int k = 0; k < rank; k++)
            {
                xo += (k == d ? (int)v : pos[k]) * xs[k];
                if (other != null) oo += pos[k] * os[k];
            }
            body(f, xo, oo);
            for (int k = rank - 1; k >= 0; k--)
            {
                if (++pos[k] < index.Shape[k]) break;
                pos[k] = 0;
            }
        }
    }

    /// <summary>torch.gather: out[p] = x[p with dim replaced by index[p]]; out has index's shape.</summary>
    public Tensor Gather(int dim, Tensor index)
    {
        RequireFloat();
        int d = ShapeUtil.NormDim(dim, Rank);
        var r = NewResult(index.ShapeArray());
        var xd = Data; var rd = r.Data;
        ForEachGather(this, index, d, "gather", null, (f, xo, _) => rd[f] = xd[xo]);
        var x = this;
        return Recorder.Record(r, "gather", [x], g =>
        {
            using var _ = GradMode.Disable();
            using var zeros = Zeros(x.ShapeArray(), DType.Float32);
            return [zeros.ScatterAdd(d, index, g)];
        });
    }

    /// <summary>torch.scatter_add (out of place): a copy of this with src[p] added at [p with dim replaced by index[p]].</summary>
    public Tensor ScatterAdd(int dim, Tensor index, Tensor src)
    {
        RequireFloat(); src.RequireFloat();
        int d = ShapeUtil.NormDim(dim, Rank);
        if (src.Rank != Rank) throw new ArgumentException($"scatter_add: src {src.ShapeString} and input {ShapeString} ranks differ");
        Tensor r;
        using (GradMode.Disable()) r = Clone();
        var rd = r.Data; var sd = src.Data;
        // r is contiguous: reuse ForEachGather with r's strides (same shape as this).
        ForEachGather(r, index, d, "scatter_add", src, (_, ro, so) => rd[ro] += sd[so]);
        Tensor x = this, s = src;
        return Recorder.Record(r, "scatter_add", [x, s], g =>
        {
            Tensor? gs = null;
            if (s.RequiresGrad)
            {
                // Gradient to src has src's shape; positions the index does not cover get 0.
                var gi = g.Gather(d, index);
                gs = ShapeUtil.SameShape(gi.Shape, s.Shape) ? gi : PadTo(gi, s.ShapeArray());
            }
            return [x.RequiresGrad ? g : null, gs];
        });
    }

    private static Tensor PadTo(Tensor t, int[] shape)
    {
        var z = Zeros(shape, DType.Float32);
        var v = z;
        for (int i = 0; i < t.Rank; i++) v = v.NarrowNoGrad(i, 0, t.Shape[i]);
        v.CopyFrom(t);
        return z;
    }

    /// <summary>A Bool/UInt8 mask broadcast to <paramref name="shape"/>, as a row-major byte array (1 = set).</summary>
    private static byte[] MaskBytes(Tensor mask, int[] shape, string op)
    {
        if (mask.DType is not (DType.Bool or DType.UInt8))
            throw new ArgumentException($"{op}: mask {mask.Name ?? mask.ShapeString} must be bool or uint8, got {mask.DType}");
        var b = new byte[ShapeUtil.Numel(shape)];
        var src = mask.Storage.U8!;
        StridedLoop.Run(shape, ShapeUtil.ContiguousStrides(shape), 0,
            ShapeUtil.BroadcastStrides(mask.Shape, mask.Strides, shape), mask.Offset, new int[shape.Length], 0,
            (o, a, _, n, so, sa, _) =>
            {
                if (sa == 0) { if (src[a] != 0) b.AsSpan(o, n).Fill(1); }
                else for (int i = 0; i < n; i++) b[o + i] = src[a + i * sa] != 0 ? (byte)1 : (byte)0;
            });
        return b;
    }

    /// <summary>A copy with <paramref name="value"/> where <paramref name="mask"/> (bool/uint8, broadcast) is set.</summary>
    public Tensor MaskedFill(Tensor mask, float value)
    {
        RequireFloat();
        var shape = ShapeUtil.Broadcast(Shape, mask.Shape);
        var mb = MaskBytes(mask, shape, "masked_fill");
        var r = NewResult(shape);
        r.CopyFrom(this);
        var rd = r.Data;
        ParallelSpans(r.Numel, (s, e) => { for (int i = s; i < e; i++) if (mb[i] != 0) rd[i] = value; });
        var x = this;
        return Recorder.Record(r, "masked_fill", [x], g =>
        {
            var gm = NewResult(shape);
            gm.CopyFrom(g);
            var gd = gm.Data;
            for (int i = 0; i < mb.Length; i++) if (mb[i] != 0) gd[i] = 0f;
            return [gm.SumToFree(x.Shape)];
        });
    }

    /// <summary>torch.where: a where cond is set, else b (all three broadcast). a and b share a dtype.</summary>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        if (a.DType != b.DType) throw new ArgumentException($"where: a is {a.DType}, b is {b.DType}");
        var shape = ShapeUtil.Broadcast(ShapeUtil.Broadcast(cond.Shape, a.Shape), b.Shape);
        var cb = MaskBytes(cond, shape, "where");
        var r = NewResult(shape, a.DType);
        r.CopyFrom(a);
        var bb = NewResult(shape, b.DType);
        bb.CopyFrom(b);
        if (a.DType == DType.Float32)
        {
            var rd = r.Data; var bd = bb.Data;
            for (int i = 0; i < cb.Length; i++) if (cb[i] == 0) rd[i] = bd[i];
        }
        else
        {
            var ra = r.RawArray; var ba = bb.RawArray;
            for (int i = 0; i < cb.Length; i++) if (cb[i] == 0) Array.Copy(ba, i, ra, i, 1);
        }
        bb.Dispose();
        if (a.DType != DType.Float32) return r;
        return Recorder.Record(r, "where", [a, b], g =>
        {
            var gc = g.ContiguousNoGrad();
            Tensor? ga = null, gb = null;
            if (a.RequiresGrad)
            {
                var t = NewResult(shape); var td = t.Data; var gd = gc.Data; int go = gc.Offset;
                for (int i = 0; i < cb.Length; i++) td[i] = cb[i] != 0 ? gd[go + i] : 0f;
                ga = t.SumToFree(a.Shape);
            }
            if (b.RequiresGrad)
            {
                var t = NewResult(shape); var td = t.Data; var gd = gc.Data; int go = gc.Offset;
                for (int i = 0; i < cb.Length; i++) td[i] = cb[i] == 0 ? gd[go + i] : 0f;
                gb = t.SumToFree(b.Shape);
            }
            DropCopy(gc, g);
            return [ga, gb];
        });
    }

    public static Tensor Where(Tensor cond, Tensor a, float b) => Where(cond, a, Scalar(b));
    public static Tensor Where(Tensor cond, float a, Tensor b) => Where(cond, Scalar(a), b);

    /// <summary>min(max(x, min), max) with torch's rules: NaN stays NaN; min &gt; max gives max.
    /// Gradient passes where min ≤ x ≤ max.</summary>
    public Tensor Clamp(float? min = null, float? max = null)
    {
        if (min is null && max is null) throw new ArgumentException("clamp needs min or max");
        float lo = min ?? float.NegativeInfinity, hi = max ?? float.PositiveInfinity;
        var y = MapKernel((x, d) => Kernels.FastMath.Clamp(x, lo, hi, d), 1 << 16);
        var xin = this;
        return Recorder.Record(y, "clamp", [xin], g => [ZipKernel(xin, g, (x, gg, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = x[i] >= lo && x[i] <= hi ? gg[i] : 0f;
        }, 1 << 16)]);
    }

    public Tensor ClampMin(float min) => Clamp(min, null);
    public Tensor ClampMax(float max) => Clamp(null, max);

    /// <summary>Element-wise maximum (NaN propagates); ties send the gradient half to each (torch).</summary>
    public Tensor Maximum(Tensor other) => MinMaxBinary(other, true);

    /// <summary>Element-wise minimum (NaN propagates); ties send the gradient half to each (torch).</summary>
    public Tensor Minimum(Tensor other) => MinMaxBinary(other, false);

    private Tensor MinMaxBinary(Tensor other, bool isMax)
    {
        RequireFloat(); other.RequireFloat();
        var shape = ShapeUtil.Broadcast(Shape, other.Shape);
        var r = NewResult(shape);
        var rd = r.Data; var ad = Data; var bd = other.Data;
        StridedLoop.Run(shape, ShapeUtil.ContiguousStrides(shape), 0,
            ShapeUtil.BroadcastStrides(Shape, Strides, shape), Offset,
            ShapeUtil.BroadcastStrides(other.Shape, other.Strides, shape), other.Offset,
            (o, ia, ib, n, so, sa, sb) =>
            {
                for (int i = 0; i < n; i++)
                {
                    float x = ad[ia + i * sa], y = bd[ib + i * sb];
                    rd[o + i * so] = float.IsNaN(x) || float.IsNaN(y) ? float.NaN : isMax ? (x >= y ? x : y) : (x <= y ? x : y);
                }
            });
        Tensor a = this, b = other;
        return Recorder.Record(r, isMax ? "maximum" : "minimum", [a, b], g =>
        {
            // weight for a: 1 where a wins, 0.5 on ties, 0 where b wins.
            var wa = NewResult(shape); var wad = wa.Data;
            using (GradMode.Disable())
            {
                using var aView = a.Expand(shape);
                using var bView = b.Expand(shape);
                var ae = aView.ContiguousNoGrad(); var be = bView.ContiguousNoGrad();
                var aed = ae.Data; var bed = be.Data; int ao = ae.Offset, bo = be.Offset;
                for (int i = 0; i < r.Numel; i++)
                {
                    float x = aed[ao + i], y = bed[bo + i];
                    wad[i] = x == y ? 0.5f : (isMax ? x > y : x < y) ? 1f : 0f;
                }
                DropCopy(ae, aView);
                DropCopy(be, bView);
            }
            Tensor? ga = a.RequiresGrad ? MulNr(g, wa).SumToFree(a.Shape) : null;
            Tensor? gb = null;
            if (b.RequiresGrad)
            {
                using var wb = wa.Affine(-1f, 1f);
                gb = MulNr(g, wb).SumToFree(b.Shape);
            }
            wa.Dispose();
            return [ga, gb];
        });
    }
}
