using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Vlm.Core.IO;

public static class SafeTensors
{
    /// <summary>Written into "__metadata__" unless the caller overrides it; HF's loaders expect format=pt.</summary>
    public static readonly IReadOnlyDictionary<string, string> DefaultMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    public static Dictionary<string, Tensor> Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.LoadAll();
    }

    /// <summary>
    /// Writes atomically: a temp file beside the target, flushed to disk, then renamed over it, so a reader sees
    /// the old file or the new one, never half of one. Tensor data is streamed straight from the tensors' buffers
    /// (non-contiguous views are gathered through a small buffer), so memory use does not grow with model size.
    /// <paramref name="metadata"/> is merged over <see cref="DefaultMetadata"/>.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = BuildHeader(list, metadata);
        WriteAtomically(path, fs => WriteBody(fs, header, list));
    }

    /// <summary>
    /// Copies every tensor of <paramref name="source"/> (in its Names order) into a safetensors file, loading one
    /// tensor at a time, so converting a checkpoint needs memory for its largest tensor only. Floating tensors are
    /// written as F32 (what they load as); integer ones as the engine type they load as.
    /// </summary>
    public static void Save(string path, IWeightSource source, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = source.Names.ToList();
        var specs = names.Select(n =>
        {
            var info = source.Info(n);
            return new Spec(n, DTypeCodec.LoadedAs(info.DType), info.Shape);
        }).ToList();
        var header = BuildHeader(specs, metadata);
        WriteAtomically(path, fs =>
        {
            WriteHeader(fs, header);
            foreach (var sp in specs)
            {
                var t = source.Load(sp.Name);
                if (t.DType != sp.DType || !t.Shape.SequenceEqual(sp.Shape))
                    throw new InvalidDataException($"{source.Origin}: tensor '{sp.Name}' loaded as {t.DType} {t.ShapeString}, not as its header said");
                WriteData(fs, t);
            }
        });
    }

    /// <summary>The bytes <see cref="Save"/> would write (tests, in-memory round trips).</summary>
    public static byte[] ToBytes(IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var ms = new MemoryStream();
        WriteBody(ms, BuildHeader(list, metadata), list);
        return ms.ToArray();
    }

    /// <summary>
    /// Writes an HF sharded checkpoint into <paramref name="dir"/>: tensors (in the given order) are packed greedily
    /// into files of at most <paramref name="maxShardBytes"/> data bytes (a tensor larger than that gets a shard of
    /// its own), named model-0000k-of-0000N.safetensors, plus model.safetensors.index.json
    /// {"metadata": {"total_size": bytes}, "weight_map": {name: file}}. Each shard is written atomically and the
    /// index last, so the index never names a shard that is not complete; shards of an earlier save with another N
    /// are then deleted. Returns the index path.
    /// </summary>
    public static string SaveSharded(string dir, IEnumerable<KeyValuePair<string, Tensor>> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        CheckNames(list);
        var byName = list.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        return SaveSharded(dir, list.Select(kv => (kv.Key, (long)kv.Value.Numel * kv.Value.DType.ElementSize())).ToList(), maxShardBytes,
            (path, names) => Save(path, names.Select(n => new KeyValuePair<string, Tensor>(n, byName[n])), metadata));
    }

    /// <summary>As above, loading one tensor at a time from <paramref name="source"/> (checkpoint conversion).</summary>
    public static string SaveSharded(string dir, IWeightSource source, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var sizes = source.Names.Select(n =>
        {
            var info = source.Info(n);
            return (n, (long)ShapeUtil.Numel(info.Shape) * DTypeCodec.LoadedAs(info.DType).ElementSize());
        }).ToList();
        return SaveSharded(dir, sizes, maxShardBytes, (path, names) => Save(path, new Subset(source, names), metadata));
    }

    /// <summary>A view of some of a source's tensors, in a given order (one shard's worth).</summary>
    private sealed class Subset(IWeightSource source, IReadOnlyList<string> names) : IWeightSource
    {
        public string Origin => source.Origin;
        public IReadOnlyCollection<string> Names => names;
        public bool Contains(string name) => names.Contains(name);
        public TensorInfo Info(string name) => source.Info(name);
        public Tensor Load(string name) => source.Load(name);
        public void Dispose() { }
    }

    private static string SaveSharded(string dir, List<(string Name, long Bytes)> sizes, long maxShardBytes, Action<string, IReadOnlyList<string>> writeShard)
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), "must be positive");
        CheckNames(sizes.Select(s => s.Name));
        var shards = new List<List<string>>();
        long current = 0, total = 0;
        foreach (var (name, size) in sizes)
        {
            total += size;
            if (shards.Count == 0 || (current + size > maxShardBytes && shards[^1].Count > 0))
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(name);
            current += size;
        }
        if (shards.Count == 0) shards.Add([]);
        Directory.CreateDirectory(dir);
        int n = shards.Count;
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var written = new HashSet<string>(StringComparer.Ordinal);
        for (int k = 0; k < n; k++)
        {
            string file = $"model-{k + 1:D5}-of-{n:D5}.safetensors";
            writeShard(Path.Combine(dir, file), shards[k]);
            written.Add(file);
            foreach (var name in shards[k]) weightMap[name] = file;
        }
        string indexPath = Path.Combine(dir, ShardedCheckpoint.SafeTensorsIndexName);
        WriteAtomically(indexPath, fs =>
        {
            using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", total);
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var (name, file) in weightMap) w.WriteString(name, file);
            w.WriteEndObject();
            w.WriteEndObject();
        });
        foreach (var stale in Directory.EnumerateFiles(dir, "model-*-of-*.safetensors"))
            if (!written.Contains(Path.GetFileName(stale))) File.Delete(stale);
        return indexPath;
    }

    private static void CheckNames(List<KeyValuePair<string, Tensor>> list) => CheckNames(list.Select(kv => kv.Key));

    private static void CheckNames(IEnumerable<string> names)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("tensor names must be non-empty");
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor");
            if (!seen.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        }
    }

    private sealed record Spec(string Name, DType DType, int[] Shape);

    private static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> list, IReadOnlyDictionary<string, string>? metadata)
    {
        CheckNames(list);
        return BuildHeader(list.Select(kv => new Spec(kv.Key, kv.Value.DType, kv.Value.ShapeArray())).ToList(), metadata);
    }

    private static byte[] BuildHeader(List<Spec> list, IReadOnlyDictionary<string, string>? metadata)
    {
        CheckNames(list.Select(s => s.Name));
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            var meta = new Dictionary<string, string>(DefaultMetadata);
            if (metadata != null) foreach (var (k, v) in metadata) meta[k] = v;
            if (meta.Count > 0)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in meta) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dt, shape) in list)
            {
                string dtype = DTypeCodec.StoredName(dt);
                long len = (long)ShapeUtil.Numel(shape) * dt.ElementSize();
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype);
                w.WriteStartArray("shape");
                foreach (int d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + len);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += len;
            }
            w.WriteEndObject();
        }
        // Pad with spaces so the data section starts 8-byte aligned (as HF's writer does).
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private static void WriteBody(Stream s, byte[] header, List<KeyValuePair<string, Tensor>> list)
    {
        WriteHeader(s, header);
        foreach (var (_, t) in list) WriteData(s, t);
    }

    private static void WriteHeader(Stream s, byte[] header)
    {
        Span<byte> len8 = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len8, (ulong)header.Length);
        s.Write(len8);
        s.Write(header);
    }

    /// <summary>Writes a tensor's elements in row-major order without materialising a contiguous copy.</summary>
    internal static void WriteData(Stream s, Tensor t)
    {
        if (t.Numel == 0) return;
        var st = t.Storage;
        if (t.IsContiguous)
        {
            switch (t.DType)
            {
                case DType.Float32: s.Write(MemoryMarshal.AsBytes(t.ReadSpan)); break;
                case DType.Int64: s.Write(MemoryMarshal.AsBytes(t.SpanI64)); break;
                case DType.Int32: s.Write(MemoryMarshal.AsBytes(t.SpanI32)); break;
                default: s.Write(t.SpanU8); break;
            }
            return;
        }
        switch (t.DType)
        {
            case DType.Float32: Gather(s, t, st.F32 ?? throw Unavailable(t)); break;
            case DType.Int64: Gather(s, t, st.I64 ?? throw Unavailable(t)); break;
            case DType.Int32: Gather(s, t, st.I32 ?? throw Unavailable(t)); break;
            default: Gather(s, t, st.U8 ?? throw Unavailable(t)); break;
        }
    }

    private static InvalidOperationException Unavailable(Tensor t) => new($"tensor {t.Name ?? t.ShapeString} has no data (disposed?)");

    private static void Gather<T>(Stream s, Tensor t, T[] data) where T : unmanaged
    {
        const int bufElems = 1 << 14;
        var buf = ArrayPool<T>.Shared.Rent(bufElems);
        try
        {
            int rank = t.Rank;
            var shape = t.Shape;
            var strides = t.Strides;
            var idx = new int[rank];
            int fill = 0;
            int off = t.Offset;
            for (int i = 0; i < t.Numel; i++)
            {
                buf[fill++] = data[off];
                if (fill == bufElems)
                {
                    s.Write(MemoryMarshal.AsBytes(buf.AsSpan(0, fill)));
                    fill = 0;
                }
                // Odometer increment over the index, updating the storage offset incrementally.
                for (int d = rank - 1; d >= 0; d--)
                {
                    if (++idx[d] < shape[d]) { off += strides[d]; break; }
                    off -= strides[d] * (shape[d] - 1);
                    idx[d] = 0;
                }
            }
            if (fill > 0) s.Write(MemoryMarshal.AsBytes(buf.AsSpan(0, fill)));
        }
        finally
        {
            ArrayPool<T>.Shared.Return(buf);
        }
    }

    /// <summary>Temp file in the target's folder (same file system, so the rename is atomic), fsync, rename.</summary>
    internal static void WriteAtomically(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        var tmp = full + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
