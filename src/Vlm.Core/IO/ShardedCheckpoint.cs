using System.Text.Json;

namespace Vlm.Core.IO;

/// <summary>
/// An HF sharded checkpoint: an index JSON {"metadata": {...}, "weight_map": {tensor name: shard file}} beside
/// its shard files (model-0000k-of-0000N.safetensors, or pytorch_model-0000k-of-0000N.bin). All shards named in
/// the index are opened (and their headers validated) at Open, and every indexed name must be in its shard;
/// tensor data is still read lazily. Shard file names must be plain names in the index's folder.
/// </summary>
public sealed class ShardedCheckpoint : IWeightSource
{
    public const string SafeTensorsIndexName = "model.safetensors.index.json";
    public const string PyTorchIndexName = "pytorch_model.bin.index.json";

    private readonly Dictionary<string, IWeightSource> _byName;
    private readonly List<IWeightSource> _shards;

    public string Origin { get; }
    /// <summary>The index's "metadata" object, values as strings (numbers in their JSON text).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyCollection<string> Names { get; }
    /// <summary>Shard file names in the order the index first mentions them.</summary>
    public IReadOnlyList<string> ShardFiles { get; }

    private ShardedCheckpoint(string origin, Dictionary<string, IWeightSource> byName, List<IWeightSource> shards,
        IReadOnlyDictionary<string, string> meta, IReadOnlyList<string> names, IReadOnlyList<string> shardFiles)
    {
        Origin = origin; _byName = byName; _shards = shards; Metadata = meta; Names = names; ShardFiles = shardFiles;
    }

    /// <summary>Opens an index; shards ending in .safetensors are memory-mapped, .bin ones read as pytorch zips.</summary>
    public static ShardedCheckpoint Open(string indexPath)
    {
        if (!File.Exists(indexPath)) throw new FileNotFoundException($"checkpoint index not found: {indexPath}", indexPath);
        string dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        InvalidDataException Bad(string what) => new($"{indexPath}: {what}");

        var weightMap = new List<(string Name, string File)>();
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath), new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad("index is not a JSON object");
            if (!doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw Bad("index has no 'weight_map' object");
            if (doc.RootElement.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
                foreach (var p in md.EnumerateObject())
                    meta[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw Bad($"weight_map entry for '{p.Name}' is not a file name");
                string file = p.Value.GetString()!;
                if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or ".." || file.Contains('\\') || file.Contains('/'))
                    throw Bad($"weight_map entry for '{p.Name}' names '{file}', which is not a plain file name in the index's folder");
                if (!seen.Add(p.Name)) throw Bad($"weight_map names tensor '{p.Name}' twice");
                weightMap.Add((p.Name, file));
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            throw Bad($"index is not valid JSON: {e.Message}");
        }

        var opened = new Dictionary<string, IWeightSource>(StringComparer.Ordinal);
        var shards = new List<IWeightSource>();
        try
        {
            var byName = new Dictionary<string, IWeightSource>(StringComparer.Ordinal);
            foreach (var (name, file) in weightMap)
            {
                if (!opened.TryGetValue(file, out var shard))
                {
                    string path = Path.Combine(dir, file);
                    if (!File.Exists(path)) throw Bad($"shard '{file}' (holding tensor '{name}') is missing from {dir}");
                    shard = file.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) ? PyTorchBinFile.Open(path) : SafeTensorsFile.Open(path);
                    opened[file] = shard;
                    shards.Add(shard);
                }
                if (!shard.Contains(name)) throw Bad($"tensor '{name}' is listed in the index but missing from shard '{file}'");
                byName[name] = shard;
            }
            return new ShardedCheckpoint(indexPath, byName, shards, meta, weightMap.Select(w => w.Name).ToArray(), opened.Keys.ToArray());
        }
        catch
        {
            foreach (var s in shards) s.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public TensorInfo Info(string name) => Shard(name).Info(name);

    public Tensor Load(string name) => Shard(name).Load(name);

    public Dictionary<string, Tensor> LoadAll() => Names.ToDictionary(n => n, Load);

    private IWeightSource Shard(string name) =>
        _byName.TryGetValue(name, out var s) ? s : throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");

    public void Dispose()
    {
        foreach (var s in _shards) s.Dispose();
    }
}

/// <summary>Opens the sharded safetensors checkpoint described by a model.safetensors.index.json.</summary>
public static class ShardedSafeTensors
{
    public static ShardedCheckpoint Open(string indexPath) => ShardedCheckpoint.Open(indexPath);
}

/// <summary>Picks the reader for a Hugging Face model folder (or a single checkpoint file).</summary>
public static class CheckpointLoader
{
    /// <summary>What <see cref="Open"/> looks for in a folder, in order of preference.</summary>
    public static readonly string[] Candidates =
        ["model.safetensors", ShardedCheckpoint.SafeTensorsIndexName, "pytorch_model.bin", ShardedCheckpoint.PyTorchIndexName];

    /// <summary>
    /// A folder: model.safetensors, else model.safetensors.index.json, else pytorch_model.bin, else
    /// pytorch_model.bin.index.json. A file: by its name (*.safetensors, *.index.json, anything else as a torch zip).
    /// </summary>
    public static IWeightSource Open(string folderOrFile)
    {
        if (File.Exists(folderOrFile)) return OpenFile(folderOrFile);
        if (!Directory.Exists(folderOrFile)) throw new FileNotFoundException($"no checkpoint file or folder at {folderOrFile}", folderOrFile);
        foreach (var c in Candidates)
        {
            string p = Path.Combine(folderOrFile, c);
            if (File.Exists(p)) return OpenFile(p);
        }
        throw new FileNotFoundException(
            $"no checkpoint in {folderOrFile}: looked for {string.Join(", ", Candidates)}");
    }

    private static IWeightSource OpenFile(string path)
    {
        if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return ShardedCheckpoint.Open(path);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return SafeTensorsFile.Open(path);
        return PyTorchBinFile.Open(path);
    }
}
