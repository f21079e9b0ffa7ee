namespace Vlm.Core;

public static class ShapeUtil
{
    public static int Numel(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var s in shape) n *= s;
        if (n > int.MaxValue) throw new ArgumentException($"shape {Format(shape)} has more than 2^31-1 elements");
        return (int)n;
    }

    public static void Validate(ReadOnlySpan<int> shape)
    {
        foreach (var s in shape)
            if (s < 0) throw new ArgumentException($"negative dimension in shape {Format(shape)}");
        Numel(shape);
    }

    public static int[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var st = new int[shape.Length];
        int acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            st[i] = acc;
            acc *= Math.Max(shape[i], 1);
        }
        return st;
    }

    public static bool IsContiguous(ReadOnlySpan<int> shape, ReadOnlySpan<int> strides)
    {
        // As in PyTorch, a tensor with no elements is contiguous whatever its strides: there is nothing to lay out.
        if (shape.Contains(0)) return true;
        int acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] == 1) continue;
            if (strides[i] != acc) return false;
            acc *= shape[i];
        }
        return true;
    }

    public static int NormDim(int dim, int rank)
    {
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= Math.Max(rank, 1) || (rank == 0 && d != 0))
            throw new ArgumentOutOfRangeException(nameof(dim), $"dim {dim} out of range for rank {rank}");
        return d;
    }

    /// <summary>NumPy broadcasting of two shapes.</summary>
    public static int[] Broadcast(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        int r = Math.Max(a.Length, b.Length);
        var o = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i < r - a.Length ? 1 : a[i - (r - a.Length)];
            int db = i < r - b.Length ? 1 : b[i - (r - b.Length)];
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"shapes {Format(a)} and {Format(b)} cannot be broadcast together");
            o[i] = da == 1 ? db : da;
        }
        return o;
    }

    /// <summary>Strides that read a tensor of <paramref name="shape"/>/<paramref name="strides"/> as if it had
    /// <paramref name="target"/> shape: 0 on broadcast dims.</summary>
    public static int[] BroadcastStrides(ReadOnlySpan<int> shape, ReadOnlySpan<int> strides, ReadOnlySpan<int> target)
    {
        var o = new int[target.Length];
        int lead = target.Length - shape.Length;
        if (lead < 0) throw new ArgumentException($"cannot broadcast {Format(shape)} to {Format(target)}");
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == target[lead + i]) o[lead + i] = shape[i] == 1 ? 0 : strides[i];
            else if (shape[i] == 1) o[lead + i] = 0;
            else throw new ArgumentException($"cannot broadcast {Format(shape)} to {Format(target)}");
        }
        return o;
    }

    public static bool SameShape(ReadOnlySpan<int> a, ReadOnlySpan<int> b) => a.SequenceEqual(b);

    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
