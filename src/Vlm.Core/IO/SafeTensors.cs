using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Vlm.Core.IO;

/// <summary>
/// A .safetensors file: 8-byte little-endian header length, a JSON header
/// {name: {dtype, shape, data_offsets}} (+ "__metadata__"), then the raw little-endian data.
/// Every header field is validated before any data is touched; errors name the file and tensor.
/// </summary>
public sealed class SafeTensorsFile : IWeightSource
{
    private readonly Dictionary<string, Entry> _entries;
    private readonly byte[] _bytes;
    private readonly long _dataStart;

    public string Origin { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyCollection<string> Names => _entries.Keys;

    private sealed record Entry(string DType, int[] Shape, long Begin, long End);

    private SafeTensorsFile(string origin, byte[] bytes)
    {
        Origin = origin;
        _bytes = bytes;
        if (bytes.Length < 8) throw Corrupt("file is shorter than the 8-byte header length");
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLen > (ulong)(bytes.Length - 8)) throw Corrupt($"header length {headerLen} runs past the end of the file ({bytes.Length} bytes)");
        _dataStart = 8 + (long)headerLen;
        long dataLen = bytes.Length - _dataStart;
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLen)); }
        catch (JsonException e) { throw Corrupt($"header is not valid JSON: {e.Message}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Corrupt("header is not a JSON object");
            _entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
            var meta = new Dictionary<string, string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in prop.Value.EnumerateObject())
                            meta[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                _entries[prop.Name] = ParseEntry(prop.Name, prop.Value, dataLen);
            }
            Metadata = meta;
        }
        var sorted = _entries.OrderBy(kv => kv.Value.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].Value.Begin < sorted[i - 1].Value.End && sorted[i].Value.End > sorted[i].Value.Begin)
                throw Corrupt($"tensors '{sorted[i - 1].Key}' and '{sorted[i].Key}' overlap");
    }

    public static SafeTensorsFile Open(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new FileNotFoundException($"safetensors file not found: {path}", path); }
        return new SafeTensorsFile(path, bytes);
    }

    public static SafeTensorsFile FromBytes(byte[] bytes, string origin = "<bytes>") => new(origin, bytes);

    private Entry ParseEntry(string name, JsonElement e, long dataLen)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Corrupt($"entry is not an object", name);
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Corrupt("missing dtype", name);
        string dtype = dt.GetString()!;
        int elemSize = ElementSize(dtype) ?? throw Corrupt($"unknown dtype '{dtype}'", name);
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Corrupt("missing shape", name);
        var shape = new List<int>();
        long numel = 1;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0 || v > int.MaxValue) throw Corrupt("shape has an invalid dimension", name);
            shape.Add((int)v);
            numel *= v;
            if (numel > int.MaxValue) throw Corrupt("shape has too many elements", name);
        }
        if (!e.TryGetProperty("data_offsets", out var offs) || offs.ValueKind != JsonValueKind.Array || offs.GetArrayLength() != 2)
            throw Corrupt("missing data_offsets", name);
        if (!offs[0].TryGetInt64(out long b) || !offs[1].TryGetInt64(out long en) || b < 0 || en < b)
            throw Corrupt("data_offsets are invalid", name);
        if (en > dataLen) throw Corrupt($"data_offsets [{b}, {en}] run past the end of the data ({dataLen} bytes)", name);
        if (en - b != numel * elemSize)
            throw Corrupt($"data_offsets span {en - b} bytes but shape {ShapeUtil.Format(shape.ToArray())} of {dtype} needs {numel * elemSize}", name);
        return new Entry(dtype, shape.ToArray(), b, en);
    }

    internal static int? ElementSize(string dtype) => dtype switch
    {
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "F64" or "I64" or "U64" => 8,
        "U8" or "I8" or "BOOL" => 1,
        _ => null,
    };

    private InvalidDataException Corrupt(string what, string? tensor = null) =>
        new($"{Origin}: {(tensor is null ? "" : $"tensor '{tensor}': ")}{what}");

    public bool Contains(string name) => _entries.ContainsKey(name);

    public TensorInfo Info(string name) =>
        _entries.TryGetValue(name, out var e) ? new TensorInfo(name, e.DType, (int[])e.Shape.Clone())
            : throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");

    public Tensor Load(string name)
    {
        if (!_entries.TryGetValue(name, out var e)) throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");
        var src = _bytes.AsSpan((int)(_dataStart + e.Begin), (int)(e.End - e.Begin));
        int n = ShapeUtil.Numel(e.Shape);
        Tensor t;
        switch (e.DType)
        {
            case "F32":
                {
                    var d = new float[n];
                    for (int i = 0; i < n; i++) d[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(4 * i)..]);
                    t = Tensor.FromArray(d, e.Shape); break;
                }
            case "F64":
                {
                    var d = new float[n];
                    for (int i = 0; i < n; i++) d[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src[(8 * i)..]);
                    t = Tensor.FromArray(d, e.Shape); break;
                }
            case "F16":
                {
                    var d = new float[n];
                    for (int i = 0; i < n; i++) d[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]));
                    t = Tensor.FromArray(d, e.Shape); break;
                }
            case "BF16":
                {
                    var d = new float[n];
                    for (int i = 0; i < n; i++) d[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]) << 16);
                    t = Tensor.FromArray(d, e.Shape); break;
                }
            case "I64":
                {
                    var d = new long[n];
                    for (int i = 0; i < n; i++) d[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(8 * i)..]);
                    t = Tensor.FromArray(d, e.Shape); break;
                }
            case "I32":
                {
                    var d = new int[n];
                    for (int i = 0; i < n; i++) d[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(4 * i)..]);
                    t = Tensor.FromArray(d, e.Shape); break;
                }
            case "U8":
                t = Tensor.FromBytes(src.ToArray(), DType.UInt8, e.Shape); break;
            case "BOOL":
                t = Tensor.FromBytes(src.ToArray(), DType.Bool, e.Shape); break;
            default:
                throw Corrupt($"dtype {e.DType} cannot be loaded", name);
        }
        t.Name = name;
        return t;
    }

    public Dictionary<string, Tensor> LoadAll() => _entries.Keys.ToDictionary(k => k, Load);

    public void Dispose() { }
}

public static class SafeTensors
{
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.LoadAll();
    }

    /// <summary>Writes atomically: a temp file beside the target, then a rename.</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, t) in list)
        {
            var (dtype, size) = t.DType switch
            {
                DType.Float32 => ("F32", 4), DType.Int64 => ("I64", 8), DType.Int32 => ("I32", 4),
                DType.UInt8 => ("U8", 1), DType.Bool => ("BOOL", 1), _ => throw new ArgumentException($"cannot save {t.DType}"),
            };
            long len = (long)t.Numel * size;
            header[name] = new { dtype, shape = t.ShapeArray(), data_offsets = new[] { offset, offset + len } };
            offset += len;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8;
        var tmp = path + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> len8 = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len8, (ulong)(json.Length + pad));
                fs.Write(len8);
                fs.Write(json);
                for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
                foreach (var (_, t0) in list)
                {
                    var t = t0.Contiguous();
                    switch (t.DType)
                    {
                        case DType.Float32: fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Span)); break;
                        case DType.Int64: fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.SpanI64)); break;
                        case DType.Int32: fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.SpanI32)); break;
                        default: fs.Write(t.SpanU8); break;
                    }
                }
                fs.Flush(true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }
}
