using System.Collections.Concurrent;

namespace Vlm.Core;

/// <summary>
/// A flat buffer shared by every view of it. Exactly one of the typed arrays is set.
/// Float buffers come from <see cref="BufferPool"/> and go back to it when the last holder lets go: every tensor
/// viewing the storage holds one reference, and each recorded autograd node holds one on the storages it reads in
/// backward (its inputs, its output and what it saved), released when that node's backward has run. So a disposed
/// activation is never overwritten while a graph still needs it, and once both the user's tensors and the graph are
/// done with it, its buffer is reused (a training step's activations feed the next step's forward).
/// </summary>
public sealed class Storage
{
    public DType DType { get; }
    public int Length { get; }
    public float[]? F32 { get; private set; }
    public long[]? I64 { get; }
    public int[]? I32 { get; }
    public byte[]? U8 { get; }

    private int _refs = 1;
    private int _version;
    /// <summary>Wraps an array a caller still holds (<see cref="Tensor.FromArray(float[], int[])"/>): it may change
    /// behind the engine's back, so nothing derived from its contents is cached (see <see cref="Version"/>).</summary>
    internal bool CallerHeld { get; private init; }
    /// <summary>Wraps a caller's array: never handed to the pool.</summary>
    private volatile bool _pinned;
    /// <summary>Autograd saved it for a backward rule: the engine never updates it in place.</summary>
    private volatile bool _saved;

    private Storage(DType dtype, int length, float[]? f, long[]? l, int[]? i, byte[]? b)
    {
        DType = dtype; Length = length; F32 = f; I64 = l; I32 = i; U8 = b;
    }

    public static Storage Allocate(DType dtype, int length, bool zero)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
        return dtype switch
        {
            DType.Float32 => new Storage(dtype, length, BufferPool.Rent(length, zero), null, null, null),
            DType.Int64 => new Storage(dtype, length, null, new long[length], null, null),
            DType.Int32 => new Storage(dtype, length, null, null, new int[length], null),
            DType.UInt8 or DType.Bool => new Storage(dtype, length, null, null, null, new byte[length]),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
        };
    }

    /// <param name="callerHeld">the caller keeps the array (true for the public FromArray); false for arrays the
    /// engine made itself (checkpoint loading), which change only through tensor APIs.</param>
    public static Storage Wrap(float[] data, bool callerHeld = true) =>
        new(DType.Float32, data.Length, data, null, null, null) { _pinned = true, CallerHeld = callerHeld };
    public static Storage Wrap(long[] data) => new(DType.Int64, data.Length, null, data, null, null);
    public static Storage Wrap(int[] data) => new(DType.Int32, data.Length, null, null, data, null);
    public static Storage Wrap(byte[] data, DType dtype) => new(dtype, data.Length, null, null, null, data);

    /// <summary>Counts writes made through the tensor APIs that can change existing elements (a public
    /// <see cref="Tensor.Span"/> handed out, the indexer, CopyFrom, AddInPlace): what is derived from the contents
    /// (prepacked Linear weights) is rebuilt when it moves. Fresh op outputs never need it.</summary>
    internal int Version => Volatile.Read(ref _version);

    internal void Touch() => Interlocked.Increment(ref _version);

    internal void Retain() => Interlocked.Increment(ref _refs);

    /// <summary>Exactly one live tensor holds this buffer and autograd has not saved it: the holder may update it in
    /// place without anyone else seeing the change (every tensor sharing a storage retains it, see Tensor.View).</summary>
    internal bool IsExclusive => Volatile.Read(ref _refs) == 1 && !_pinned && !_saved && F32 != null;

    /// <summary>An autograd node holds this buffer until its backward has run (a reference of its own, released by
    /// <see cref="Release"/>); from then on the engine never updates it in place.</summary>
    internal void RetainForBackward()
    {
        _saved = true;
        Retain();
    }

    /// <summary>The float buffer went back to the pool (every holder released it).</summary>
    internal bool IsFreed => DType == DType.Float32 && F32 is null;

    internal void Release()
    {
        if (Interlocked.Decrement(ref _refs) != 0 || _pinned) return;
        var f = F32;
        if (f is null) return;
        F32 = null;
        BufferPool.Return(f);
    }
}

/// <summary>
/// Exact-length buckets of float arrays: a transformer allocates the same few shapes over and
/// over, so exact sizes give near-perfect reuse without ArrayPool's power-of-two waste.
/// </summary>
public static class BufferPool
{
    private const int MinPooled = 4096;
    private static readonly ConcurrentDictionary<int, ConcurrentBag<float[]>> Buckets = new();
    private static long _pooledBytes;
    /// <summary>Most bytes kept in the pool; a buffer returned beyond it is left to the GC. A training step of a base-size
    /// model recycles more than 2 GiB of activations (BridgeTower base at batch 2: ~3 GB), and every buffer over the
    /// cap is a fresh, page-faulting allocation in the next step, so the default is a quarter of the memory the GC may
    /// use (at least 2 GiB). <c>VLM_POOL_MAX_MB</c> sets it.</summary>
    public static long MaxPooledBytes { get; set; } = DefaultMaxPooledBytes();

    private static long DefaultMaxPooledBytes()
    {
        if (long.TryParse(Environment.GetEnvironmentVariable("VLM_POOL_MAX_MB"), out var mb) && mb >= 0) return mb << 20;
        return Math.Max(2L << 30, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);
    }

    public static float[] Rent(int length, bool zero)
    {
        if (length >= MinPooled && Buckets.TryGetValue(length, out var bag) && bag.TryTake(out var arr))
        {
            Interlocked.Add(ref _pooledBytes, -4L * length);
            if (zero) Array.Clear(arr);
            return arr;
        }
        if (length >= MinPooled) _threadFresh++;
        return zero ? new float[length] : GC.AllocateUninitializedArray<float>(length);
    }

    [ThreadStatic] private static long _threadFresh;

    /// <summary>Poolable buffers this thread had to allocate because none of their length was free. A no-grad
    /// forward that releases its intermediates allocates (nearly) none when it runs a second time.</summary>
    public static long ThreadFreshAllocations => _threadFresh;

    public static void Return(float[] arr)
    {
        if (arr.Length < MinPooled) return;
        if (Interlocked.Add(ref _pooledBytes, 4L * arr.Length) > MaxPooledBytes)
        {
            Interlocked.Add(ref _pooledBytes, -4L * arr.Length);
            return;
        }
        Buckets.GetOrAdd(arr.Length, _ => new ConcurrentBag<float[]>()).Add(arr);
    }

    /// <summary>Drops every pooled buffer (tests, and after a large one-off job).</summary>
    public static void Clear()
    {
        Buckets.Clear();
        Interlocked.Exchange(ref _pooledBytes, 0);
    }
}
