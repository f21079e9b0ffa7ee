using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Nn;

/// <summary>How a fresh parameter is filled when no weights are given.</summary>
public delegate void Initializer(Tensor t, Rng rng);

/// <summary>
/// Hands parameters to module constructors under a name prefix (candle's VarBuilder). Built either over an
/// <see cref="IWeightSource"/> (a checkpoint: values are read and shapes checked) or over an <see cref="Rng"/>
/// (fresh initialisation). Problems are collected, not thrown one by one: <see cref="Finish"/> reports every
/// missing, unexpected and mis-shaped key of the whole model in one error.
/// </summary>
public sealed class VarBuilder
{
    private readonly Shared _s;
    public string Prefix { get; }

    private sealed class Shared
    {
        public IWeightSource? Source;
        public Rng? Rng;
        public ParameterStore Store = new();
        public List<string> Missing = new();
        public List<string> Misshaped = new();
        public HashSet<string> Consumed = new(StringComparer.Ordinal);
        public HashSet<string> Ignored = new(StringComparer.Ordinal);
        public DropoutContext Dropout = new();
        public Func<string, Tensor?>? Share;
    }

    private VarBuilder(Shared s, string prefix)
    {
        _s = s;
        Prefix = prefix;
        s.Store.Dropout = s.Dropout;
    }

    public static VarBuilder FromWeights(IWeightSource source) => new(new Shared { Source = source }, "");

    public static VarBuilder Init(Rng rng) => new(new Shared { Rng = rng }, "");

    public bool IsLoading => _s.Source != null;

    public ParameterStore Store => _s.Store;

    /// <summary>The random stream used for fresh parameters (null when loading).</summary>
    public Rng? Rng => _s.Rng;

    /// <summary>The model-wide dropout stream (seed 0 until reseeded; also reachable as <see cref="ParameterStore.Dropout"/>).</summary>
    public DropoutContext Dropout => _s.Dropout;

    public VarBuilder this[string name] => Sub(name);

    public VarBuilder this[int index] => Sub(index.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public VarBuilder Sub(string name) => new(_s, Join(name));

    private string Join(string name) => Prefix.Length == 0 ? name : Prefix + "." + name;

    /// <summary>True when the checkpoint has this tensor (always false when initialising).</summary>
    public bool Has(string name) => _s.Source?.Contains(Join(name)) ?? false;

    /// <summary>A trainable parameter of <paramref name="shape"/>: read from the checkpoint, or initialised.</summary>
    public Tensor Param(string name, int[] shape, Initializer init) => Create(name, shape, init, register: true);

    /// <summary>A persistent buffer (in the state dict, not trained), e.g. BatchNorm statistics.</summary>
    public Tensor Buffer(string name, int[] shape, Initializer init)
    {
        var t = Create(name, shape, init, register: true);
        t.RequiresGrad = false;
        return t;
    }

    /// <summary>Registers <paramref name="existing"/> under another name (tied weights). The checkpoint may or may
    /// not hold the alias; when it does, its value must match the shape.</summary>
    public Tensor Tie(string name, Tensor existing)
    {
        var full = Join(name);
        if (_s.Source?.Contains(full) == true)
        {
            _s.Consumed.Add(full);
            var info = _s.Source.Info(full);
            if (!info.Shape.SequenceEqual(existing.ShapeArray()))
                _s.Misshaped.Add($"{full}: file {ShapeUtil.Format(info.Shape)}, model {existing.ShapeString}");
        }
        _s.Store.Add(full, existing);
        return existing;
    }

    /// <summary>Checkpoint keys under this prefix that the model deliberately does not use (e.g. HF's
    /// non-persistent buffers saved by old versions).</summary>
    public void Ignore(string name) => _s.Ignored.Add(Join(name));

    /// <summary>While the returned scope lives, a parameter whose full name <paramref name="lookup"/> maps to an
    /// existing tensor is that tensor (registered under the new name too), not a new one: weight sharing between
    /// modules built separately (BLIP's decoder shares all but self-attention with the text encoder). A shared
    /// tensor must have the declared shape.</summary>
    public IDisposable ShareParameters(Func<string, Tensor?> lookup)
    {
        if (_s.Share != null) throw new InvalidOperationException("ShareParameters scopes do not nest");
        _s.Share = lookup;
        return new ShareScope(_s);
    }

    private sealed class ShareScope(Shared s) : IDisposable
    {
        public void Dispose() => s.Share = null;
    }

    private Tensor Create(string name, int[] shape, Initializer init, bool register)
    {
        var full = Join(name);
        if (_s.Share?.Invoke(full) is { } shared)
        {
            if (!shared.ShapeArray().SequenceEqual(shape))
                throw new InvalidOperationException($"{full}: shared tensor {shared.Name ?? "?"} has shape {shared.ShapeString}, the module declares {ShapeUtil.Format(shape)}");
            if (register) _s.Store.Add(full, shared);
            return shared;
        }
        Tensor t;
        if (_s.Source is { } src)
        {
            if (!src.Contains(full))
            {
                _s.Missing.Add(full);
                t = Tensor.Zeros(shape);
            }
            else
            {
                _s.Consumed.Add(full);
                var info = src.Info(full);
                if (!info.Shape.SequenceEqual(shape))
                {
                    _s.Misshaped.Add($"{full}: file {ShapeUtil.Format(info.Shape)}, model {ShapeUtil.Format(shape)}");
                    t = Tensor.Zeros(shape);
                }
                else
                {
                    t = src.Load(full);
                    if (t.DType != DType.Float32) t = t.To(DType.Float32);
                    if (!t.IsContiguous) t = t.Contiguous();
                }
            }
        }
        else
        {
            t = Tensor.Zeros(shape);
            using (Tensor.NoGrad()) init(t, _s.Rng!);
        }
        t.Name = full;
        t.RequiresGrad = true;
        if (register) _s.Store.Add(full, t);
        return t;
    }

    /// <summary>Throws one error listing every missing, mis-shaped and (when strict) unexpected key.</summary>
    public ParameterStore Finish(bool strict = true)
    {
        if (_s.Source is { } src)
        {
            var unexpected = strict
                ? src.Names.Where(n => !_s.Consumed.Contains(n) && !_s.Ignored.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToList()
                : [];
            var err = LoadErrors.Format(src.Origin, _s.Missing, unexpected, _s.Misshaped);
            if (err != null) throw new InvalidDataException(err);
        }
        return _s.Store;
    }
}

/// <summary>Initialisers matching torch.nn.init (the distributions, not PyTorch's random stream).</summary>
public static class Init
{
    public static readonly Initializer Zeros = (t, _) => t.Span.Clear();
    public static readonly Initializer Ones = (t, _) => t.Span.Fill(1f);

    public static Initializer Constant(float v) => (t, _) => t.Span.Fill(v);

    public static Initializer Normal(float mean = 0f, float std = 1f) => (t, rng) =>
    {
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (float)(mean + std * rng.NextNormal());
    };

    /// <summary>Normal redrawn until inside [a, b] (torch.nn.init.trunc_normal_ semantics).</summary>
    public static Initializer TruncatedNormal(float mean = 0f, float std = 1f, float a = -2f, float b = 2f) => (t, rng) =>
    {
        var s = t.Span;
        for (int i = 0; i < s.Length; i++)
        {
            double v;
            do v = mean + std * rng.NextNormal(); while (v < a || v > b);
            s[i] = (float)v;
        }
    };

    public static Initializer Uniform(float low, float high) => (t, rng) =>
    {
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (float)(low + (high - low) * rng.NextDouble());
    };

    /// <summary>fan_in and fan_out as torch computes them: dim 1 and dim 0 times the receptive field.</summary>
    public static (int fanIn, int fanOut) Fans(ReadOnlySpan<int> shape)
    {
        if (shape.Length < 2) throw new ArgumentException("fan in/out need at least 2 dims");
        int receptive = 1;
        for (int i = 2; i < shape.Length; i++) receptive *= shape[i];
        return (shape[1] * receptive, shape[0] * receptive);
    }

    public static readonly Initializer XavierUniform = (t, rng) =>
    {
        var (fi, fo) = Fans(t.Shape);
        float a = MathF.Sqrt(6f / (fi + fo));
        Uniform(-a, a)(t, rng);
    };

    public static readonly Initializer XavierNormal = (t, rng) =>
    {
        var (fi, fo) = Fans(t.Shape);
        Normal(0f, MathF.Sqrt(2f / (fi + fo)))(t, rng);
    };

    /// <summary>kaiming_uniform_(a=√5): PyTorch's default for Linear and Conv weights.</summary>
    public static readonly Initializer KaimingUniformDefault = (t, rng) =>
    {
        var (fi, _) = Fans(t.Shape);
        float gain = MathF.Sqrt(2f / (1f + 5f));
        float bound = gain * MathF.Sqrt(3f / fi);
        Uniform(-bound, bound)(t, rng);
    };

    public static readonly Initializer KaimingNormal = (t, rng) =>
    {
        var (fi, _) = Fans(t.Shape);
        Normal(0f, MathF.Sqrt(2f / fi))(t, rng);
    };

    /// <summary>Uniform(±1/√fan_in): PyTorch's default Linear/Conv bias init.</summary>
    public static Initializer BiasUniform(int fanIn) => Uniform(-1f / MathF.Sqrt(fanIn), 1f / MathF.Sqrt(fanIn));
}
