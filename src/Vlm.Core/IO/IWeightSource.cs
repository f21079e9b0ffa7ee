namespace Vlm.Core.IO;

/// <summary>What a stored tensor is, before its data is read.</summary>
public sealed record TensorInfo(string Name, string DType, int[] Shape);

/// <summary>
/// Named tensors a model is built from: one safetensors file, a sharded checkpoint, a pytorch_model.bin,
/// or tensors in memory. Models ask for each parameter by its HF name; <see cref="Load"/> returns float32
/// for floating dtypes (F16/BF16/F64 converted) and int64/int32/uint8/bool as stored.
/// </summary>
public interface IWeightSource : IDisposable
{
    /// <summary>Where the tensors come from (a path), for error messages.</summary>
    string Origin { get; }
    IReadOnlyCollection<string> Names { get; }
    bool Contains(string name);
    TensorInfo Info(string name);
    Tensor Load(string name);
}

/// <summary>Tensors held in memory (tests, freshly initialised models, conversions).</summary>
public sealed class InMemoryWeights(IReadOnlyDictionary<string, Tensor> tensors, string origin = "<memory>") : IWeightSource
{
    public string Origin { get; } = origin;
    public IReadOnlyCollection<string> Names => tensors.Keys.ToArray();
    public bool Contains(string name) => tensors.ContainsKey(name);

    public TensorInfo Info(string name) => tensors.TryGetValue(name, out var t)
        ? new TensorInfo(name, t.DType.ToString(), t.ShapeArray())
        : throw new KeyNotFoundException($"tensor '{name}' not found in {Origin}");

    public Tensor Load(string name) => tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"tensor '{name}' not found in {Origin}");
    public void Dispose() { }
}
