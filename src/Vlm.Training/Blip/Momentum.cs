// Momentum distillation state (MoCo arXiv 1911.05722, used by ALBEF arXiv 2107.07651 §3.3 and BLIP arXiv 2201.12086
// §3.2): an exponential-moving-average copy of the unimodal encoders and projections that is never trained by
// gradients, and queues of its past features that enlarge the ITC negatives.
using Vlm.Core;
using Vlm.Nn;

namespace Vlm.Training.Blip;

/// <summary>Pairs of (online, momentum) parameters with the same name. <see cref="CopyParams"/> starts the copy
/// equal to the online model; <see cref="Update"/> is the reference's
/// <c>param_m = param_m·m + param·(1 − m)</c> in float32 with the coefficients rounded to float.</summary>
public sealed class MomentumCopy
{
    public IReadOnlyList<(string Name, Tensor Online, Tensor Momentum)> Pairs { get; }

    /// <param name="online">the trained model's parameters</param>
    /// <param name="momentum">the copy's parameters; each must exist in <paramref name="online"/> with its shape</param>
    public MomentumCopy(ParameterStore online, ParameterStore momentum)
    {
        var pairs = new List<(string, Tensor, Tensor)>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (name, m) in momentum.Unique())
        {
            if (!online.Contains(name)) throw new ArgumentException($"momentum parameter '{name}' has no online counterpart");
            var o = online[name];
            if (!o.ShapeArray().SequenceEqual(m.ShapeArray())) throw new ArgumentException($"momentum parameter '{name}' {m.ShapeString} differs from the online {o.ShapeString}");
            if (!seen.Add(m)) continue;
            m.RequiresGrad = false;
            pairs.Add((name, o, m));
        }
        Pairs = pairs;
    }

    public void CopyParams()
    {
        foreach (var (_, o, m) in Pairs) o.Contiguous().Span.CopyTo(m.Span);
    }

    /// <param name="momentum">m as the reference's Python float (a double): 1 − m is taken in double, then both
    /// coefficients are rounded to float32, as torch does for a float tensor times a Python scalar.</param>
    public void Update(double momentum)
    {
        // torch: param_m.data * m + param.data * (1. - m), each product rounded to float32, then the sum.
        float a = (float)momentum, c = (float)(1.0 - momentum);
        foreach (var (_, o, m) in Pairs)
        {
            var ms = m.Span;
            ReadOnlySpan<float> os = o.Contiguous().Span;
            for (int i = 0; i < ms.Length; i++)
            {
                float x = ms[i] * a, y = os[i] * c;
                ms[i] = x + y;
            }
        }
    }
}

/// <summary>The ITC feature queues: image and text features (Q, E) and the image ids of each slot (−100 until
/// written), with a write pointer. Enqueueing B features writes slots ptr … ptr + B − 1 (modulo Q, so a batch that
/// does not divide Q wraps around; the reference requires Q % B == 0, which is the special case) and advances the
/// pointer by B modulo Q. Initial features are random unit vectors, as the reference.</summary>
public sealed class FeatureQueue
{
    public int Size { get; }
    public int Dim { get; }
    public Tensor Image { get; }   // (Q, E)
    public Tensor Text { get; }    // (Q, E)
    public long[] Idx { get; }     // (Q)
    public int Ptr { get; private set; }

    public FeatureQueue(int size, int dim, Rng rng)
    {
        if (size < 0 || dim <= 0) throw new ArgumentException($"queue size {size} / dim {dim} invalid");
        Size = size; Dim = dim;
        using (Tensor.NoGrad())
        {
            Image = size == 0 ? Tensor.Zeros(0, dim) : F.Normalize(Tensor.Randn([size, dim], rng), dim: 1).Contiguous();
            Text = size == 0 ? Tensor.Zeros(0, dim) : F.Normalize(Tensor.Randn([size, dim], rng), dim: 1).Contiguous();
        }
        Idx = Enumerable.Repeat(-100L, size).ToArray();
    }

    public void Enqueue(Tensor imageFeat, Tensor textFeat, long[]? idx = null)
    {
        int b = imageFeat.Size(0);
        if (imageFeat.Rank != 2 || imageFeat.Size(1) != Dim || textFeat.Rank != 2 || textFeat.Size(0) != b || textFeat.Size(1) != Dim)
            throw new ArgumentException($"enqueue: features {imageFeat.ShapeString} / {textFeat.ShapeString} are not (B, {Dim})");
        if (idx != null && idx.Length != b) throw new ArgumentException($"enqueue: idx has {idx.Length} entries for {b} features");
        if (Size == 0) return;
        if (b > Size) throw new ArgumentException($"enqueue: a batch of {b} is larger than the queue ({Size})");
        var im = imageFeat.Contiguous().ToArray();
        var tx = textFeat.Contiguous().ToArray();
        var qi = Image.Span; var qt = Text.Span;
        for (int i = 0; i < b; i++)
        {
            int slot = (Ptr + i) % Size;
            im.AsSpan(i * Dim, Dim).CopyTo(qi.Slice(slot * Dim, Dim));
            tx.AsSpan(i * Dim, Dim).CopyTo(qt.Slice(slot * Dim, Dim));
            Idx[slot] = idx?[i] ?? -100L;
        }
        Ptr = (Ptr + b) % Size;
    }

    /// <summary>Restores a saved state (checkpoints).</summary>
    public void Load(float[] image, float[] text, long[] idx, int ptr)
    {
        if (image.Length != Size * Dim || text.Length != Size * Dim || idx.Length != Size || ptr < 0 || (Size > 0 && ptr >= Size) || (Size == 0 && ptr != 0))
            throw new InvalidDataException($"queue state does not fit a queue of {Size}×{Dim} (image {image.Length}, text {text.Length}, idx {idx.Length}, ptr {ptr})");
        image.CopyTo(Image.Span); text.CopyTo(Text.Span); idx.CopyTo(Idx, 0); Ptr = ptr;
    }
}
