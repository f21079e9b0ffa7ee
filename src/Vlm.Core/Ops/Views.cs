using Vlm.Core.Autograd;
using Vlm.Core.Ops;

namespace Vlm.Core;

/// <summary>Shape ops. Each returns a view over the same storage when strides allow, and records
/// the inverse mapping of the gradient.</summary>
public sealed partial class Tensor
{
    /// <summary>Reshape; one dimension may be -1. A view when the layout allows, else a copy (like torch.reshape).</summary>
    public Tensor Reshape(params int[] shape)
    {
        var target = InferShape(shape);
        Tensor r;
        if (TryViewStrides(target, out var strides)) r = View(target, strides, Offset);
        else
        {
            // The copy is private: the result views it, and this op records its own node against the input.
            var copy = ContiguousNoGrad();
            r = copy.ReshapeContiguous(target);
            copy.Dispose();
        }
        var inShape = ShapeArray();
        return Recorder.Record(r, "reshape", [this], g => [g.Reshape(inShape)]);
    }

    private Tensor ReshapeContiguous(int[] target) => View(target, ShapeUtil.ContiguousStrides(target), Offset);

    private int[] InferShape(int[] shape)
    {
        var t = (int[])shape.Clone();
        int infer = -1; long known = 1;
        for (int i = 0; i < t.Length; i++)
        {
            if (t[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException("only one dimension can be -1 in reshape");
                infer = i;
            }
            else if (t[i] < 0) throw new ArgumentException($"invalid dimension {t[i]} in reshape");
            else known *= t[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Numel % known != 0) throw new ArgumentException($"cannot reshape {ShapeString} to {ShapeUtil.Format(shape)}");
            t[infer] = (int)(Numel / known);
        }
        if (ShapeUtil.Numel(t) != Numel) throw new ArgumentException($"cannot reshape {ShapeString} ({Numel} elements) to {ShapeUtil.Format(shape)}");
        return t;
    }

    /// <summary>Strides for viewing this tensor with a new shape without copying (PyTorch's computeStride).</summary>
    private bool TryViewStrides(int[] target, out int[] strides)
    {
        strides = new int[target.Length];
        if (IsContiguous) { strides = ShapeUtil.ContiguousStrides(target); return true; }
        if (Numel == 0) { strides = ShapeUtil.ContiguousStrides(target); return true; }
        var oldShape = _shape; var oldStrides = _strides;
        int viewD = target.Length - 1;
        long chunkBase = oldStrides.Length > 0 ? oldStrides[^1] : 1;
        long tensorNumel = 1, viewNumel = 1;
        for (int d = oldShape.Length - 1; d >= 0; d--)
        {
            tensorNumel *= oldShape[d];
            if (d == 0 || (oldShape[d - 1] != 1 && oldStrides[d - 1] != tensorNumel * chunkBase))
            {
                while (viewD >= 0 && (viewNumel < tensorNumel || target[viewD] == 1))
                {
                    strides[viewD] = (int)(viewNumel * chunkBase);
                    viewNumel *= target[viewD];
                    viewD--;
                }
                if (viewNumel != tensorNumel) return false;
                if (d > 0) { chunkBase = oldStrides[d - 1]; tensorNumel = 1; viewNumel = 1; }
            }
        }
        return viewD == -1;
    }

    public Tensor Flatten(int startDim = 0, int endDim = -1)
    {
        if (Rank == 0) return Reshape(1);
        int s = ShapeUtil.NormDim(startDim, Rank), e = ShapeUtil.NormDim(endDim, Rank);
        var shape = new List<int>();
        for (int i = 0; i < s; i++) shape.Add(_shape[i]);
        int m = 1; for (int i = s; i <= e; i++) m *= _shape[i];
        shape.Add(m);
        for (int i = e + 1; i < Rank; i++) shape.Add(_shape[i]);
        return Reshape(shape.ToArray());
    }

    public Tensor Transpose(int dim0, int dim1)
    {
        int d0 = ShapeUtil.NormDim(dim0, Rank), d1 = ShapeUtil.NormDim(dim1, Rank);
        var perm = Enumerable.Range(0, Rank).ToArray();
        (perm[d0], perm[d1]) = (perm[d1], perm[d0]);
        return Permute(perm);
    }

    /// <summary>Transpose of the last two dims (matrix transpose).</summary>
    public Tensor T => Transpose(-2, -1);

    public Tensor Permute(params int[] dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"permute needs {Rank} dims, got {dims.Length}");
        var seen = new bool[Rank];
        var shape = new int[Rank]; var strides = new int[Rank]; var inverse = new int[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int d = ShapeUtil.NormDim(dims[i], Rank);
            if (seen[d]) throw new ArgumentException($"repeated dim {d} in permute");
            seen[d] = true;
            shape[i] = _shape[d]; strides[i] = _strides[d]; inverse[d] = i;
        }
        var r = View(shape, strides, Offset);
        return Recorder.Record(r, "permute", [this], g => [g.Permute(inverse)]);
    }

    /// <summary>Elements [start, start+length) of one dim, as a view.</summary>
    public Tensor Narrow(int dim, int start, int length)
    {
        int d = ShapeUtil.NormDim(dim, Rank);
        if (start < 0) start += _shape[d];
        if (start < 0 || length < 0 || start + length > _shape[d])
            throw new ArgumentOutOfRangeException(nameof(start), $"narrow({dim}, {start}, {length}) out of range for size {_shape[d]}");
        var shape = ShapeArray(); shape[d] = length;
        var r = View(shape, _strides.ToArray(), Offset + start * _strides[d]);
        var inShape = ShapeArray();
        return Recorder.Record(r, "narrow", [this], g =>
        {
            var full = Zeros(inShape);
            // Dispose the slice view so `full` stays the sole holder of its buffer (the engine then sums into it).
            using (var slice = full.NarrowNoGrad(d, start, length)) slice.CopyFrom(g);
            return [full];
        }, (g, acc) =>
        {
            using var slice = acc.NarrowNoGrad(d, start, length);
            slice.AddInPlace(g);
        });
    }

    private Tensor NarrowNoGrad(int d, int start, int length)
    {
        var shape = ShapeArray(); shape[d] = length;
        return View(shape, _strides.ToArray(), Offset + start * _strides[d]);
    }

    /// <summary>x[..., index, ...] along one dim (the dim disappears).</summary>
    public Tensor Select(int dim, int index)
    {
        int d = ShapeUtil.NormDim(dim, Rank);
        if (index < 0) index += _shape[d];
        var slice = Narrow(d, index, 1);
        var r = slice.Squeeze(d);
        slice.Dispose();   // the squeezed view holds the buffer (and, when recording, its node holds the slice)
        return r;
    }

    public Tensor Unsqueeze(int dim)
    {
        int d = ShapeUtil.NormDim(dim, Rank + 1);
        var shape = _shape.ToList(); var strides = _strides.ToList();
        int st = d < Rank ? _strides[d] * _shape[d] : 1;
        shape.Insert(d, 1); strides.Insert(d, st);
        var r = View(shape.ToArray(), strides.ToArray(), Offset);
        var inShape = ShapeArray();
        return Recorder.Record(r, "unsqueeze", [this], g => [g.Reshape(inShape)]);
    }

    /// <summary>Removes one size-1 dim, or every size-1 dim when <paramref name="dim"/> is null.</summary>
    public Tensor Squeeze(int? dim = null)
    {
        var shape = new List<int>(); var strides = new List<int>();
        int only = dim is int dd ? ShapeUtil.NormDim(dd, Rank) : -1;
        for (int i = 0; i < Rank; i++)
        {
            bool drop = _shape[i] == 1 && (only < 0 || only == i);
            if (!drop) { shape.Add(_shape[i]); strides.Add(_strides[i]); }
        }
        var r = View(shape.ToArray(), strides.ToArray(), Offset);
        var inShape = ShapeArray();
        return Recorder.Record(r, "squeeze", [this], g => [g.Reshape(inShape)]);
    }

    /// <summary>Broadcasts to <paramref name="shape"/> without copying (-1 keeps a dim).</summary>
    public Tensor Expand(params int[] shape)
    {
        var target = (int[])shape.Clone();
        int lead = target.Length - Rank;
        if (lead < 0) throw new ArgumentException($"cannot expand {ShapeString} to fewer dims {ShapeUtil.Format(shape)}");
        for (int i = 0; i < target.Length; i++)
            if (target[i] == -1)
            {
                if (i < lead) throw new ArgumentException("-1 not allowed in a new leading dim of expand");
                target[i] = _shape[i - lead];
            }
        var strides = ShapeUtil.BroadcastStrides(_shape, _strides, target);
        var r = View(target, strides, Offset);
        var inShape = ShapeArray();
        return Recorder.Record(r, "expand", [this], g => [g.SumTo(inShape)]);
    }

    public Tensor ExpandAs(Tensor other) => Expand(other.ShapeArray());

    /// <summary>This tensor when already contiguous, else a row-major copy.</summary>
    public Tensor Contiguous() => IsContiguous ? this : Clone();

    /// <summary>A contiguous copy (records identity gradient).</summary>
    public Tensor Clone()
    {
        var r = NewResult(ShapeArray(), DType);
        r.CopyFrom(this);
        return DType == DType.Float32 ? Recorder.Record(r, "clone", [this], g => [g]) : r;
    }

    /// <summary>Copies <paramref name="src"/> (broadcast to this shape) into this tensor's elements. Not recorded.</summary>
    public void CopyFrom(Tensor src)
    {
        if (src.DType != DType) throw new ArgumentException($"copy from {src.DType} into {DType}");
        Storage.Touch();
        var shape = ShapeArray();
        var ss = ShapeUtil.BroadcastStrides(src.Shape, src.Strides, shape);
        if (DType == DType.Float32)
        {
            var dd = Data; var sd = src.Data;
            StridedLoop.Run(shape, _strides, Offset, ss, src.Offset, new int[shape.Length], 0, (o, a, _, n, so, sa, _) =>
            {
                if (so == 1 && sa == 1) sd.AsSpan(a, n).CopyTo(dd.AsSpan(o, n));
                else if (so == 1 && sa == 0) dd.AsSpan(o, n).Fill(sd[a]);
                else for (int i = 0; i < n; i++) dd[o + i * so] = sd[a + i * sa];
            });
        }
        else
        {
            Array dArr = (Array?)Storage.I64 ?? (Array?)Storage.I32 ?? Storage.U8!;
            Array sArr = (Array?)src.Storage.I64 ?? (Array?)src.Storage.I32 ?? src.Storage.U8!;
            StridedLoop.Run(shape, _strides, Offset, ss, src.Offset, new int[shape.Length], 0, (o, a, _, n, so, sa, _) =>
            {
                for (int i = 0; i < n; i++) Array.Copy(sArr, a + i * sa, dArr, o + i * so, 1);
            }, int.MaxValue);
        }
    }
}
