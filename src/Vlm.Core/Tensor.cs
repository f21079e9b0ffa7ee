using System.Runtime.CompilerServices;
using System.Text;
using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>
/// An n-dimensional view (shape, strides in elements, offset) over a shared <see cref="Storage"/>.
/// View ops (reshape of contiguous data, transpose, permute, narrow, expand, (un)squeeze) never copy.
/// Semantics follow PyTorch: NumPy broadcasting, row-major contiguity, reverse-mode autograd.
/// </summary>
public sealed partial class Tensor : IDisposable
{
    internal readonly Storage Storage;
    private readonly int[] _shape;
    private readonly int[] _strides;
    private int _disposed;

    public int Offset { get; }
    public DType DType => Storage.DType;
    public int Rank => _shape.Length;
    public int Numel { get; }
    public ReadOnlySpan<int> Shape => _shape;
    public ReadOnlySpan<int> Strides => _strides;
    public bool IsContiguous { get; }

    /// <summary>Set on leaves (parameters, inputs) whose gradient is wanted.</summary>
    public bool RequiresGrad { get; set; }

    /// <summary>Accumulated gradient of a leaf after <see cref="Backward"/>.</summary>
    public Tensor? Grad { get; set; }

    /// <summary>The recorded op that produced this tensor (null for leaves and under no-grad).</summary>
    public Node? GradFn { get; internal set; }

    /// <summary>Optional name, used in error messages (parameters carry their state-dict key).</summary>
    public string? Name { get; set; }

    internal Tensor(Storage storage, int[] shape, int[] strides, int offset, bool retain)
    {
        Storage = storage;
        _shape = shape;
        _strides = strides;
        Offset = offset;
        Numel = ShapeUtil.Numel(shape);
        IsContiguous = ShapeUtil.IsContiguous(shape, strides);
        if (retain) storage.Retain();
    }

    internal Tensor(Storage storage, int[] shape) : this(storage, shape, ShapeUtil.ContiguousStrides(shape), 0, false) { }

    public int Size(int dim) => _shape[ShapeUtil.NormDim(dim, Rank)];
    public int Stride(int dim) => _strides[ShapeUtil.NormDim(dim, Rank)];
    public int[] ShapeArray() => (int[])_shape.Clone();
    public string ShapeString => ShapeUtil.Format(_shape);

    // ---------------------------------------------------------------- creation

    public static Tensor Empty(int[] shape, DType dtype = DType.Float32)
    {
        ShapeUtil.Validate(shape);
        return new Tensor(Storage.Allocate(dtype, ShapeUtil.Numel(shape), zero: false), (int[])shape.Clone());
    }

    public static Tensor Zeros(params int[] shape) => Zeros(shape, DType.Float32);

    public static Tensor Zeros(int[] shape, DType dtype)
    {
        ShapeUtil.Validate(shape);
        return new Tensor(Storage.Allocate(dtype, ShapeUtil.Numel(shape), zero: true), (int[])shape.Clone());
    }

    public static Tensor Ones(params int[] shape) => Full(shape, 1f);

    public static Tensor Full(int[] shape, float value)
    {
        var t = Empty(shape);
        t.Span.Fill(value);
        return t;
    }

    public static Tensor Scalar(float value) => FromArray(new[] { value }, Array.Empty<int>());

    /// <summary>Wraps (does not copy) <paramref name="data"/> as a contiguous tensor.</summary>
    public static Tensor FromArray(float[] data, params int[] shape)
    {
        CheckLength(data.Length, shape);
        return new Tensor(Storage.Wrap(data), (int[])shape.Clone());
    }

    /// <summary>As <see cref="FromArray(float[], int[])"/> for an array the engine made and nobody else holds
    /// (checkpoint loading): its contents change only through tensor APIs, so derived caches may key on it.</summary>
    internal static Tensor FromOwnedArray(float[] data, int[] shape)
    {
        CheckLength(data.Length, shape);
        return new Tensor(Storage.Wrap(data, callerHeld: false), (int[])shape.Clone());
    }

    public static Tensor FromArray(long[] data, params int[] shape)
    {
        CheckLength(data.Length, shape);
        return new Tensor(Storage.Wrap(data), (int[])shape.Clone());
    }

    public static Tensor FromArray(int[] data, params int[] shape)
    {
        CheckLength(data.Length, shape);
        return new Tensor(Storage.Wrap(data), (int[])shape.Clone());
    }

    public static Tensor FromArray(bool[] data, params int[] shape)
    {
        CheckLength(data.Length, shape);
        var bytes = new byte[data.Length];
        for (int i = 0; i < data.Length; i++) bytes[i] = data[i] ? (byte)1 : (byte)0;
        return new Tensor(Storage.Wrap(bytes, DType.Bool), (int[])shape.Clone());
    }

    public static Tensor FromBytes(byte[] data, DType dtype, params int[] shape)
    {
        if (dtype is not (DType.UInt8 or DType.Bool)) throw new ArgumentException("FromBytes takes UInt8 or Bool", nameof(dtype));
        CheckLength(data.Length, shape);
        return new Tensor(Storage.Wrap(data, dtype), (int[])shape.Clone());
    }

    private static void CheckLength(int length, int[] shape)
    {
        ShapeUtil.Validate(shape);
        if (ShapeUtil.Numel(shape) != length)
            throw new ArgumentException($"data has {length} elements but shape {ShapeUtil.Format(shape)} needs {ShapeUtil.Numel(shape)}");
    }

    // ---------------------------------------------------------------- data access

    /// <summary>The float32 elements of a contiguous tensor, in row-major order. The span is writable, so handing it
    /// out counts as a write (<see cref="Storage.Version"/>): a span kept across an inference call
    /// (<see cref="Inference"/>) and written afterwards is not seen by that scope's prepacked weights.</summary>
    public Span<float> Span
    {
        get
        {
            RequireContiguous();
            var f = Storage.F32 ?? throw DataUnavailable();
            Storage.Touch();
            return f.AsSpan(Offset, Numel);
        }
    }

    public Span<long> SpanI64
    {
        get { RequireContiguous(); return (Storage.I64 ?? throw DataUnavailable()).AsSpan(Offset, Numel); }
    }

    public Span<int> SpanI32
    {
        get { RequireContiguous(); return (Storage.I32 ?? throw DataUnavailable()).AsSpan(Offset, Numel); }
    }

    public Span<byte> SpanU8
    {
        get { RequireContiguous(); return (Storage.U8 ?? throw DataUnavailable()).AsSpan(Offset, Numel); }
    }

    /// <summary>The float32 elements of a contiguous tensor for reading: unlike <see cref="Span"/>, not counted as a
    /// write.</summary>
    internal ReadOnlySpan<float> ReadSpan
    {
        get
        {
            RequireContiguous();
            return (Storage.F32 ?? throw DataUnavailable()).AsSpan(Offset, Numel);
        }
    }

    /// <summary>The whole underlying float buffer (kernels index it through Offset/Strides).</summary>
    internal float[] Data => Storage.F32 ?? throw DataUnavailable();

    private InvalidOperationException DataUnavailable() =>
        _disposed != 0
            ? new ObjectDisposedException($"tensor {Name ?? ShapeString}")
            : new InvalidOperationException($"tensor {Name ?? ShapeString} holds {DType}, not the requested element type");

    private void RequireContiguous()
    {
        if (!IsContiguous) throw new InvalidOperationException($"tensor {Name ?? ShapeString} is not contiguous; call Contiguous() first");
    }

    /// <summary>A row-major copy of the elements as float32 (ids and masks are converted).</summary>
    public float[] ToArray()
    {
        var c = ContiguousNoGrad();
        float[] r;
        if (DType == DType.Float32) r = c.ReadSpan.ToArray();
        else
        {
            r = new float[Numel];
            for (int i = 0; i < r.Length; i++) r[i] = c.GetFlat(i);
        }
        DropCopy(c, this);
        return r;
    }

    public long[] ToInt64Array()
    {
        var c = ContiguousNoGrad();
        long[] r;
        if (DType == DType.Int64) r = c.SpanI64.ToArray();
        else
        {
            r = new long[Numel];
            for (int i = 0; i < r.Length; i++) r[i] = (long)c.GetFlat(i);
        }
        DropCopy(c, this);
        return r;
    }

    /// <summary>Element at a contiguous tensor's flat index, converted to float.</summary>
    private float GetFlat(int i) => DType switch
    {
        DType.Float32 => Storage.F32![Offset + i],
        DType.Int64 => Storage.I64![Offset + i],
        DType.Int32 => Storage.I32![Offset + i],
        _ => Storage.U8![Offset + i],
    };

    /// <summary>Offset into storage of a multi-index.</summary>
    public int OffsetOf(ReadOnlySpan<int> index)
    {
        if (index.Length != Rank) throw new ArgumentException($"index of rank {index.Length} for tensor of shape {ShapeString}");
        int o = Offset;
        for (int d = 0; d < Rank; d++)
        {
            int i = index[d];
            if ((uint)i >= (uint)_shape[d]) throw new IndexOutOfRangeException($"index {i} out of range for dim {d} of size {_shape[d]}");
            o += i * _strides[d];
        }
        return o;
    }

    [IndexerName("At")]
    public float this[params int[] index]
    {
        get => DType switch
        {
            DType.Float32 => Data[OffsetOf(index)],
            DType.Int64 => Storage.I64![OffsetOf(index)],
            DType.Int32 => Storage.I32![OffsetOf(index)],
            _ => Storage.U8![OffsetOf(index)],
        };
        set
        {
            int o = OffsetOf(index);
            Storage.Touch();
            switch (DType)
            {
                case DType.Float32: Data[o] = value; break;
                case DType.Int64: Storage.I64![o] = (long)value; break;
                case DType.Int32: Storage.I32![o] = (int)value; break;
                default: Storage.U8![o] = (byte)value; break;
            }
        }
    }

    /// <summary>The single value of a one-element tensor.</summary>
    public float Item()
    {
        if (Numel != 1) throw new InvalidOperationException($"Item() needs one element, tensor has shape {ShapeString}");
        return Contiguous().GetFlat(0);
    }

    // ---------------------------------------------------------------- autograd entry points

    /// <summary>Back-propagates from this tensor (a scalar unless <paramref name="gradient"/> is given).</summary>
    public void Backward(Tensor? gradient = null) => Engine.Backward(this, gradient);

    /// <summary>Same data, cut from the graph.</summary>
    public Tensor Detach() => new(Storage, _shape, _strides, Offset, retain: true) { Name = Name };

    /// <summary>Marks this leaf as wanting a gradient; returns this for chaining.</summary>
    public Tensor RequireGrad(bool value = true)
    {
        if (GradFn != null && !value) throw new InvalidOperationException("cannot clear RequiresGrad of a non-leaf; use Detach()");
        RequiresGrad = value;
        return this;
    }

    /// <summary>Disables recording within a using-scope (inference, optimizer steps).</summary>
    public static IDisposable NoGrad() => GradMode.Disable();

    /// <summary>torch.inference_mode: no recording, and the weights stay fixed while the scope is open, so Linear
    /// layers reuse weights packed for the GEMM once (one extra copy of each weight used; <c>VLM_PREPACK=0</c>
    /// turns it off). Do not modify parameters inside the scope.</summary>
    public static IDisposable Inference() => GradMode.Inference();

    /// <summary>Creates the result tensor of an op over fresh contiguous storage.</summary>
    internal static Tensor NewResult(int[] shape, DType dtype = DType.Float32, bool zero = false) =>
        new(Storage.Allocate(dtype, ShapeUtil.Numel(shape), zero), shape);

    /// <summary>A view sharing this tensor's storage.</summary>
    internal Tensor View(int[] shape, int[] strides, int offset) => new(Storage, shape, strides, offset, retain: true);

    /// <summary>Lets go of this tensor's hold on its buffer, which goes back to the pool once no other view and no
    /// recorded autograd node holds it (nodes hold what their backward reads until it has run, so disposing an
    /// activation of a graph in training is safe and lets backward recycle it). A no-op on leaves that require grad
    /// (parameters). Do not use the tensor afterwards.</summary>
    public void Dispose()
    {
        if (GradFn == null && RequiresGrad) return;
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Storage.Release();
        // A recorded tensor that no live node consumes, once disposed, can no longer be reached by any backward (a
        // backward reaches a node only through a tensor some later node consumes): its node, and the nodes above it
        // that only it kept alive, let go of their buffers now, as torch frees an unreferenced graph.
        if (GradFn is { } node && Volatile.Read(ref Consumers) == 0) node.ReleaseHeld(cascade: true);
    }

    /// <summary>Recorded nodes not yet released that take this tensor as an input (see <see cref="Dispose"/>).</summary>
    internal int Consumers;

    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>This tensor is the only holder of its whole, unsaved float buffer (contiguous, from offset 0, not
    /// disposed): the autograd engine may accumulate into it or hand it over as a leaf's .Grad.</summary>
    internal bool OwnsBufferExclusively =>
        _disposed == 0 && IsContiguous && Offset == 0 && Storage.DType == DType.Float32 && Storage.Length == Numel && Storage.IsExclusive;

    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append("Tensor(").Append(ShapeString).Append(", ").Append(DType);
        if (RequiresGrad) sb.Append(", requires_grad");
        if (Numel <= 16)
        {
            sb.Append(", [");
            var a = ToArray();
            sb.Append(string.Join(", ", a.Select(v => v.ToString("G6", System.Globalization.CultureInfo.InvariantCulture))));
            sb.Append(']');
        }
        return sb.Append(')').ToString();
    }
}
