using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Nn;

/// <summary>
/// Every parameter of a model under its full state-dict name, in declaration order. Tied parameters appear
/// under each of their names but are one tensor (<see cref="Unique"/> lists each once, for optimizers).
/// </summary>
public sealed class ParameterStore
{
    private readonly List<KeyValuePair<string, Tensor>> _ordered = new();
    private readonly Dictionary<string, Tensor> _byName = new(StringComparer.Ordinal);

    public IReadOnlyList<KeyValuePair<string, Tensor>> Named => _ordered;

    public int Count => _ordered.Count;

    /// <summary>The dropout stream shared by the model's <see cref="Vlm.Nn.Dropout"/> layers.</summary>
    public DropoutContext Dropout { get; internal set; } = new();

    public Tensor this[string name] => _byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"no parameter named '{name}'");

    public bool Contains(string name) => _byName.ContainsKey(name);

    internal void Add(string name, Tensor t)
    {
        if (!_byName.TryAdd(name, t)) throw new InvalidOperationException($"parameter '{name}' declared twice");
        _ordered.Add(new(name, t));
    }

    /// <summary>Each distinct tensor once, with its first name.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> Unique()
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var kv in _ordered) if (seen.Add(kv.Value)) yield return kv;
    }

    public long NumElements => Unique().Sum(kv => (long)kv.Value.Numel);

    /// <summary>Stops (or restarts) gradients for every parameter whose name starts with <paramref name="prefix"/>.</summary>
    public void SetRequiresGrad(string prefix, bool requiresGrad)
    {
        foreach (var (name, t) in _ordered)
            if (name.StartsWith(prefix, StringComparison.Ordinal)) t.RequiresGrad = requiresGrad;
    }

    public void ZeroGrad()
    {
        foreach (var (_, t) in _ordered) t.Grad = null;
    }

    /// <summary>The state dict: name → tensor (tied tensors under every name, like PyTorch).</summary>
    public Dictionary<string, Tensor> StateDict() => _ordered.ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>Copies values from <paramref name="source"/> into the existing parameters. Strict: every
    /// missing, unexpected and mis-shaped key is listed in one error, and nothing is changed.</summary>
    public void Load(IWeightSource source, bool strict = true, IEnumerable<string>? optionalNames = null)
    {
        var optional = new HashSet<string>(optionalNames ?? [], StringComparer.Ordinal);
        var missing = new List<string>(); var misshaped = new List<string>();
        foreach (var (name, t) in _ordered)
        {
            if (!source.Contains(name)) { if (!optional.Contains(name)) missing.Add(name); continue; }
            var info = source.Info(name);
            if (!info.Shape.SequenceEqual(t.ShapeArray()))
                misshaped.Add($"{name}: file {ShapeUtil.Format(info.Shape)}, model {t.ShapeString}");
            else if (!IsFloatDType(info.DType))
                misshaped.Add($"{name}: file dtype {info.DType}, model needs a floating-point tensor");
        }
        var unexpected = source.Names.Where(n => !_byName.ContainsKey(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var err = LoadErrors.Format(source.Origin, missing, strict ? unexpected : [], misshaped);
        if (err != null) throw new InvalidDataException(err);
        using (Tensor.NoGrad())
            foreach (var (name, t) in _ordered)
                if (source.Contains(name))
                {
                    var v = source.Load(name);
                    t.CopyFrom(v.DType == DType.Float32 ? v : v.To(DType.Float32));
                }
    }

    private static bool IsFloatDType(string dtype) => dtype is "F32" or "F16" or "BF16" or "F64" or "Float32";

    /// <summary>Loads a safetensors file written by <see cref="Save"/> (or by HF) into the parameters; see <see cref="Load(IWeightSource, bool, IEnumerable{string}?)"/>.</summary>
    public void Load(string path, bool strict = true)
    {
        using var f = SafeTensorsFile.Open(path);
        Load(f, strict);
    }

    /// <summary>Writes every parameter (tied ones under each name, like a PyTorch state dict) to a safetensors
    /// file, atomically (temp file + rename).</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null) => SafeTensors.Save(path, _ordered, metadata);
}

internal static class LoadErrors
{
    public static string? Format(string origin, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misshaped)
    {
        if (missing.Count + unexpected.Count + misshaped.Count == 0) return null;
        var sb = new System.Text.StringBuilder($"weights in {origin} do not fit the model:");
        void Section(string title, IReadOnlyList<string> items)
        {
            if (items.Count == 0) return;
            sb.Append($"\n  {title} ({items.Count}):");
            foreach (var i in items.Take(50)) sb.Append("\n    ").Append(i);
            if (items.Count > 50) sb.Append($"\n    ... and {items.Count - 50} more");
        }
        Section("missing keys", missing);
        Section("unexpected keys", unexpected);
        Section("mis-shaped keys", misshaped);
        return sb.ToString();
    }
}
