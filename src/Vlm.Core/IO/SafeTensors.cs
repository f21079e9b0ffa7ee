using System.Buffers.Binary;
using System.Text.Json;

namespace Vlm.Core.IO;

/// <summary>
/// A .safetensors file (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian header
/// length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets}} (+ optional "__metadata__" string map),
/// then the data section. The file is memory-mapped and each tensor is read only when asked for, into a managed
/// array, so tensors never reference the mapping and stay valid after <see cref="Dispose"/>.
///
/// Validation follows the spec as the reference (Rust) reader enforces it; every violation is an
/// <see cref="InvalidDataException"/> naming the file and the tensor, raised at Open before any data is touched:
/// the header is at most 100 MB, starts with '{', is a JSON object without duplicate names; the data section is
/// covered exactly by the tensors: no overlaps and no holes or trailing bytes ("the byte buffer needs to be
/// entirely indexed, and cannot contain holes", which rules out polyglot files). Zero-element tensors are allowed.
/// Loads are serialised by a lock (the mapping must not be released mid-read). As with any mapping, a file
/// truncated in place by another process while open would fault; our writer replaces files by rename, which
/// leaves open mappings intact.
/// </summary>
public sealed class SafeTensorsFile : IWeightSource
{
    /// <summary>The reference reader's limit; a larger header is corruption, not a model.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly Dictionary<string, Entry> _entries;
    private readonly ByteSource _source;
    private readonly long _dataStart;
    private readonly Lock _lock = new();
    private bool _disposed;

    public string Origin { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensor names in file (offset) order.</summary>
    public IReadOnlyCollection<string> Names { get; }

    private sealed record Entry(string DType, int[] Shape, long Begin, long End);

    private SafeTensorsFile(string origin, ByteSource source)
    {
        Origin = origin;
        _source = source;
        try
        {
            (_entries, Metadata, _dataStart) = ParseHeader(source);
            Names = _entries.OrderBy(kv => kv.Value.Begin).ThenBy(kv => kv.Value.End).Select(kv => kv.Key).ToArray();
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Maps the file and validates its header; tensor data is read by <see cref="Load"/>.</summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        return new SafeTensorsFile(path, ByteSource.Map(path));
    }

    public static SafeTensorsFile FromBytes(byte[] bytes, string origin = "<bytes>") => new(origin, ByteSource.FromArray(bytes));

    private (Dictionary<string, Entry>, IReadOnlyDictionary<string, string>, long) ParseHeader(ByteSource src)
    {
        long fileLen = src.Length;
        if (fileLen == 0) throw Corrupt("file is empty");
        if (fileLen < 8) throw Corrupt($"file is {fileLen} bytes, shorter than the 8-byte header length");
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(src.Slice(0, 8));
        if (headerLen > MaxHeaderBytes) throw Corrupt($"header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit");
        if (headerLen > (ulong)(fileLen - 8)) throw Corrupt($"header length {headerLen} runs past the end of the file ({fileLen} bytes)");
        if (headerLen < 2) throw Corrupt($"header length {headerLen} is too short for a JSON object");
        long dataStart = 8 + (long)headerLen;
        long dataLen = fileLen - dataStart;
        byte[] header = src.Slice(8, (int)headerLen).ToArray();
        if (header[0] != (byte)'{') throw Corrupt("header does not start with '{'");

        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMeta = false;
        try
        {
            // Trailing spaces pad the header to 8 bytes; the JSON reader skips them as whitespace.
            using var doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Corrupt("header is not a JSON object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                string name = prop.Name;
                if (name == "__metadata__")
                {
                    if (sawMeta) throw Corrupt("duplicate '__metadata__'");
                    sawMeta = true;
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Corrupt("'__metadata__' is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Corrupt($"'__metadata__' value for '{m.Name}' is not a string");
                        if (!meta.TryAdd(m.Name, m.Value.GetString()!)) throw Corrupt($"duplicate '__metadata__' key '{m.Name}'");
                    }
                    continue;
                }
                CheckName(name);
                var e = ParseEntry(name, prop.Value, dataLen);
                if (!entries.TryAdd(name, e)) throw Corrupt("duplicate tensor name", name);
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or FormatException)
        {
            // JsonException: malformed JSON or invalid UTF-8; InvalidOperationException: an escaped lone surrogate.
            throw Corrupt($"header is not valid JSON: {e.Message}");
        }

        // The data section must be tiled exactly: sorted by offsets, each tensor starts where the previous ended.
        long pos = 0;
        string? prev = null;
        foreach (var (name, e) in entries.OrderBy(kv => kv.Value.Begin).ThenBy(kv => kv.Value.End))
        {
            if (e.Begin < pos) throw Corrupt($"data_offsets [{e.Begin}, {e.End}] overlap tensor '{prev}' (which ends at {pos})", name);
            if (e.Begin > pos) throw Corrupt($"data bytes [{pos}, {e.Begin}) before this tensor belong to no tensor (the format forbids holes)", name);
            pos = e.End;
            prev = name;
        }
        if (pos != dataLen) throw Corrupt($"data section is {dataLen} bytes but the tensors cover only {pos} (the format forbids unreferenced bytes)");
        return (entries, meta, dataStart);
    }

    private void CheckName(string name)
    {
        if (name.Length == 0) throw Corrupt("a tensor has an empty name");
        foreach (char c in name)
            if (char.IsControl(c)) throw Corrupt($"tensor name '{Escape(name)}' contains control character U+{(int)c:X4}");
    }

    private static string Escape(string s) => string.Concat(s.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));

    private Entry ParseEntry(string name, JsonElement e, long dataLen)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Corrupt("entry is not an object", name);
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Corrupt("missing or non-string 'dtype'", name);
        string dtype = dt.GetString()!;
        int elemSize = DTypeCodec.ElementSize(dtype) ?? throw Corrupt($"unknown or unsupported dtype '{dtype}'", name);
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Corrupt("missing or non-array 'shape'", name);
        if (sh.GetArrayLength() > 16) throw Corrupt($"shape has {sh.GetArrayLength()} dimensions (at most 16 supported)", name);
        var shape = new int[sh.GetArrayLength()];
        long numel = 1;
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v)) throw Corrupt($"shape dimension {k} ({d.GetRawText()}) is not an integer", name);
            if (v < 0) throw Corrupt($"shape dimension {k} is negative ({v})", name);
            if (v > int.MaxValue) throw Corrupt($"shape dimension {k} ({v}) is too large", name);
            shape[k++] = (int)v;
            numel = numel == 0 || v == 0 ? 0 : (numel > int.MaxValue / v ? long.MaxValue : numel * v);
        }
        if (numel > int.MaxValue) throw Corrupt($"shape {ShapeUtil.Format(shape)} has more than {int.MaxValue} elements", name);
        if (!e.TryGetProperty("data_offsets", out var offs) || offs.ValueKind != JsonValueKind.Array || offs.GetArrayLength() != 2)
            throw Corrupt("missing 'data_offsets' or it is not a pair", name);
        if (offs[0].ValueKind != JsonValueKind.Number || offs[1].ValueKind != JsonValueKind.Number
            || !offs[0].TryGetInt64(out long b) || !offs[1].TryGetInt64(out long en))
            throw Corrupt($"data_offsets {offs.GetRawText()} are not integers", name);
        if (b < 0 || en < b) throw Corrupt($"data_offsets [{b}, {en}] are not an increasing pair of non-negative offsets", name);
        if (en > dataLen) throw Corrupt($"data_offsets [{b}, {en}] run past the end of the data section ({dataLen} bytes)", name);
        if (en - b != numel * elemSize)
            throw Corrupt($"data_offsets span {en - b} bytes but shape {ShapeUtil.Format(shape)} of {dtype} needs {numel * elemSize}", name);
        return new Entry(dtype, shape, b, en);
    }

    private InvalidDataException Corrupt(string what, string? tensor = null) =>
        new($"{Origin}: {(tensor is null ? "" : $"tensor '{Escape(tensor)}': ")}{what}");

    public bool Contains(string name) => _entries.ContainsKey(name);

    public TensorInfo Info(string name) =>
        _entries.TryGetValue(name, out var e) ? new TensorInfo(name, e.DType, (int[])e.Shape.Clone())
            : throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");

    /// <summary>Reads one tensor into a new managed array (float32 for floating dtypes; see <see cref="DTypeCodec"/>).</summary>
    public Tensor Load(string name)
    {
        if (!_entries.TryGetValue(name, out var e)) throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");
        int n = ShapeUtil.Numel(e.Shape);
        int elemSize = DTypeCodec.ElementSize(e.DType)!.Value;
        var dst = DTypeCodec.Allocate(e.DType, n);
        // Decode in chunks so a span never exceeds int range (an 8-byte dtype with 2^31 elements would).
        const int chunk = 1 << 24;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            for (int i = 0; i < n; i += chunk)
            {
                int m = Math.Min(chunk, n - i);
                var src = _source.Slice(_dataStart + e.Begin + (long)i * elemSize, m * elemSize);
                string? err = DTypeCodec.Decode(e.DType, src, dst, i);
                if (err != null) throw Corrupt(err, name);
            }
        }
        var t = DTypeCodec.Wrap(e.DType, dst, e.Shape);
        t.Name = name;
        return t;
    }

    public Dictionary<string, Tensor> LoadAll() => Names.ToDictionary(k => k, Load);

    /// <summary>Releases the mapping. Tensors already loaded own their data and remain valid.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _source.Dispose();
        }
    }
}
