using System.Runtime.CompilerServices;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>
/// Linear weights packed once into the managed GEMM's panel layout, for inference (<see cref="Tensor.Inference"/>).
/// Every Linear call packs its weight anew (as OpenBLAS and PyTorch do); at a few hundred rows that packing was
/// 12–18% of a ViT-B Linear's time with the weight in cache, and in a cached decoding step (one row) it is most of it. ONNX Runtime and
/// oneDNN keep such prepacked weights for inference sessions; this cache does the same behind F.Linear.
/// <list type="bullet">
/// <item>Parameters only: leaves that want a gradient or carry a name (VarBuilder's and the loaders' tensors).</item>
/// <item>Keyed on the weight's storage (weakly: the packed copy dies with the weight) and its offset and shape (one
///   storage can hold several weights, e.g. a fused in-projection cut into views).</item>
/// <item>Valid while the storage's <see cref="Storage.Version"/> is unchanged: the public ways to change elements
///   (Span, the indexer, CopyFrom, AddInPlace; optimizers and loaders use them) move it, so a weight changed
///   between scopes is repacked at its next use. Arrays a caller still holds (Tensor.FromArray) can change unseen
///   and are never cached.</item>
/// <item>At most <see cref="BudgetBytes"/> of packed copies live at once (4 GiB or a quarter of the memory, whichever
///   is less; a ViT-B needs 0.34 GB, BridgeTower base ~1.1 GB); past that, calls pack per call as before.
///   <c>VLM_PREPACK=0</c> turns the cache off.</item>
/// </list>
/// The packed copies are native memory (outside the GC heap; see GemmManaged.PackedB) freed with their weight.
/// The packed GEMM runs the same kernel, blocks and order of operations as the per-call path: results are the
/// same bits.
/// </summary>
public static class PackedWeights
{
    private static readonly bool Enabled = Environment.GetEnvironmentVariable("VLM_PREPACK") != "0";

    /// <summary>Upper bound on the bytes of live packed copies: 4 GiB, or a quarter of the memory the GC may use
    /// when that is less.</summary>
    public static long BudgetBytes { get; set; } = Math.Min(4L << 30, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);

    /// <summary>A budget for this flow only (tests), instead of <see cref="BudgetBytes"/>.</summary>
    internal static readonly AsyncLocal<long?> FlowBudget = new();

    private static long _bytes;

    /// <summary>Bytes held by live packed copies (tests).</summary>
    public static long Bytes => Interlocked.Read(ref _bytes);

    private static readonly ConditionalWeakTable<Storage, List<Entry>> Table = new();

    /// <summary>One packed copy; gives its bytes back to the budget when collected with its storage.</summary>
    private sealed class Entry(int offset, int outF, int inF, int version, GemmManaged.PackedB packed)
    {
        public readonly int Offset = offset, OutF = outF, InF = inF;
        public int Version = version;
        public GemmManaged.PackedB Packed = packed;
        ~Entry() => Interlocked.Add(ref _bytes, -Packed.Bytes);
    }

    /// <summary>The packed op(B) = Wᵀ of a contiguous (out, in) weight, or null when prepacking does not apply
    /// (not in an inference scope, not the managed backend, caller-held array, over budget).</summary>
    internal static GemmManaged.PackedB? Get(Tensor weight)
    {
        if (!Enabled || !Autograd.GradMode.IsInference || !GemmManaged.IsAccelerated || Gemm.Effective != GemmBackend.Managed)
            return null;
        // Parameters only (named or gradient-wanting leaves, as VarBuilder and the loaders make them): a weight computed
        // per call is fresh storage every time, and packing it into a long-lived copy would only churn the cache.
        if (weight.GradFn != null || !weight.RequiresGrad && weight.Name is null) return null;
        var storage = weight.Storage;
        var data = storage.F32;
        if (storage.CallerHeld || data is null || !weight.IsContiguous || weight.Rank != 2) return null;
        int outF = weight.Size(0), inF = weight.Size(1), version = storage.Version;
        var list = Table.GetOrCreateValue(storage);
        lock (list)
        {
            foreach (var e in list)
            {
                if (e.Offset != weight.Offset || e.OutF != outF || e.InF != inF) continue;
                if (e.Version == version) return e.Packed;
                // Changed since it was packed: repack into a new copy (the old one may be in use on another thread).
                var fresh = Pack(data, weight.Offset, outF, inF, reuseBytes: e.Packed.Bytes);
                if (fresh is null) return null;
                Interlocked.Add(ref _bytes, fresh.Bytes - e.Packed.Bytes);
                e.Packed = fresh;
                e.Version = version;
                return fresh;
            }
            var packed = Pack(data, weight.Offset, outF, inF, reuseBytes: 0);
            if (packed is null) return null;
            Interlocked.Add(ref _bytes, packed.Bytes);
            list.Add(new Entry(weight.Offset, outF, inF, version, packed));
            return packed;
        }
    }

    /// <summary>Whether <paramref name="weight"/> has a packed copy that is current (tests).</summary>
    internal static bool IsPacked(Tensor weight)
    {
        if (!Table.TryGetValue(weight.Storage, out var list)) return false;
        lock (list)
            return list.Any(e => e.Offset == weight.Offset && e.OutF == weight.Size(0) && e.InF == weight.Size(-1)
                && e.Version == weight.Storage.Version);
    }

    private static GemmManaged.PackedB? Pack(float[] data, int offset, int outF, int inF, long reuseBytes)
    {
        long need = GemmManaged.PackedBytes(inF, outF, wide: true);
        if (Bytes - reuseBytes + need > (FlowBudget.Value ?? BudgetBytes)) return null;
        return GemmManaged.Pack(true, inF, outF, data.AsSpan(offset, outF * inF), inF);
    }
}
