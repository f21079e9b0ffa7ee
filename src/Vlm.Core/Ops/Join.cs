using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>Concatenation, stacking and splitting (torch.cat / stack / split / chunk).</summary>
public sealed partial class Tensor
{
    /// <summary>Concatenates along <paramref name="dim"/>; all tensors share dtype, rank and every other size.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("cat needs at least one tensor");
        var first = tensors[0];
        int rank = first.Rank;
        if (rank == 0) throw new ArgumentException("cat: zero-dimensional tensor cannot be concatenated; use Stack");
        int d = ShapeUtil.NormDim(dim, rank);
        int total = 0;
        for (int k = 0; k < tensors.Count; k++)
        {
            var t = tensors[k];
            if (t.DType != first.DType) throw new ArgumentException($"cat: tensor {k} has dtype {t.DType}, tensor 0 has {first.DType}");
            if (t.Rank != rank) throw new ArgumentException($"cat: tensor {k} has shape {t.ShapeString}, tensor 0 has {first.ShapeString} (ranks differ)");
            for (int i = 0; i < rank; i++)
                if (i != d && t.Shape[i] != first.Shape[i])
                    throw new ArgumentException($"cat along dim {d}: tensor {k} has shape {t.ShapeString}, tensor 0 has {first.ShapeString}");
            total += t.Shape[d];
        }
        var shape = first.ShapeArray(); shape[d] = total;
        var r = NewResult(shape, first.DType);
        var starts = new int[tensors.Count];
        int at = 0;
        for (int k = 0; k < tensors.Count; k++)
        {
            var t = tensors[k];
            starts[k] = at;
            int len = t.Shape[d];
            if (len > 0)
            {
                // Disposed: an undisposed view would keep r's buffer from ever going back to the pool.
                using var piece = r.NarrowNoGrad(d, at, len);
                piece.CopyFrom(t);
            }
            at += len;
        }
        var inputs = tensors.ToArray();
        return Recorder.Record(r, "cat", inputs, g =>
        {
            var gs = new Tensor?[inputs.Length];
            for (int k = 0; k < inputs.Length; k++)
                if (inputs[k].RequiresGrad)
                {
                    var piece = g.NarrowNoGrad(d, starts[k], inputs[k].Shape[d]);
                    gs[k] = piece.ContiguousNoGrad();
                    DropCopy(piece, gs[k]);
                }
            return gs;
        });
    }

    /// <summary>Stacks equal-shaped tensors along a new dim.</summary>
    public static Tensor Stack(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("stack needs at least one tensor");
        var first = tensors[0];
        int d = ShapeUtil.NormDim(dim, first.Rank + 1);
        for (int k = 1; k < tensors.Count; k++)
            if (!ShapeUtil.SameShape(tensors[k].Shape, first.Shape))
                throw new ArgumentException($"stack: tensor {k} has shape {tensors[k].ShapeString}, tensor 0 has {first.ShapeString}");
        if (first.Rank == 0) return Cat(tensors.Select(t => t.Reshape(1)).ToArray(), 0);
        return Cat(tensors.Select(t => t.Unsqueeze(d)).ToArray(), d);
    }

    /// <summary>Pieces of <paramref name="splitSize"/> along <paramref name="dim"/> (the last may be smaller); views.</summary>
    public Tensor[] Split(int splitSize, int dim = 0)
    {
        int d = ShapeUtil.NormDim(dim, Rank);
        int n = _shape[d];
        if (splitSize < 0 || (splitSize == 0 && n != 0)) throw new ArgumentException($"split size must be positive, got {splitSize} for dim of size {n}");
        if (n == 0) return [Narrow(d, 0, 0)];
        var parts = new List<Tensor>();
        for (int s = 0; s < n; s += splitSize) parts.Add(Narrow(d, s, Math.Min(splitSize, n - s)));
        return parts.ToArray();
    }

    /// <summary>Pieces with the given sizes along <paramref name="dim"/>, which must add up to its size; views.</summary>
    public Tensor[] Split(int[] sizes, int dim = 0)
    {
        int d = ShapeUtil.NormDim(dim, Rank);
        long sum = 0;
        foreach (var s in sizes)
        {
            if (s < 0) throw new ArgumentException($"split sizes must be non-negative, got [{string.Join(", ", sizes)}]");
            sum += s;
        }
        if (sum != _shape[d]) throw new ArgumentException($"split sizes [{string.Join(", ", sizes)}] add up to {sum}, dim {d} has size {_shape[d]}");
        var parts = new Tensor[sizes.Length];
        int at = 0;
        for (int i = 0; i < sizes.Length; i++) { parts[i] = Narrow(d, at, sizes[i]); at += sizes[i]; }
        return parts;
    }

    /// <summary>torch.chunk: pieces of ceil(size / chunks) (so there may be fewer than <paramref name="chunks"/>).</summary>
    public Tensor[] Chunk(int chunks, int dim = 0)
    {
        if (chunks <= 0) throw new ArgumentException($"chunk count must be positive, got {chunks}");
        int d = ShapeUtil.NormDim(dim, Rank);
        int n = _shape[d];
        int size = (n + chunks - 1) / chunks;
        if (size == 0) return Enumerable.Range(0, chunks).Select(_ => Narrow(d, 0, 0)).ToArray(); // torch gives `chunks` empty pieces
        return Split(size, d);
    }

    /// <summary>Splits into all slices along <paramref name="dim"/> (torch.unbind); each drops that dim.</summary>
    public Tensor[] Unbind(int dim = 0)
    {
        int d = ShapeUtil.NormDim(dim, Rank);
        var parts = new Tensor[_shape[d]];
        for (int i = 0; i < parts.Length; i++) parts[i] = Select(d, i);
        return parts;
    }
}
