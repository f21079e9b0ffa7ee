using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Vlm.Models.Retrieval;

public enum VectorStorage
{
    Float32,
    /// <summary>Symmetric per-vector int8 (scale = max|x|/127): 4× smaller, scores within ~1% of float32.</summary>
    Int8,
}

/// <summary>One stored item: a caller-chosen id, where it came from (image path or caption text), and its kind.</summary>
public sealed record IndexEntry(string Id, string Source, string Kind);

public readonly record struct SearchHit(int Index, float Score, IndexEntry Entry);

/// <summary>
/// A flat embedding index for retrieval at collection scale: embeddings are computed once (BridgeTower's
/// contrastive heads produce L2-normalised vectors), stored as float32 or int8, and a query is ranked by dot
/// product over every stored vector with a bounded top-k heap. Brute force is the right tool up to a few million
/// vectors on a CPU: it is exact, needs no training and streams memory at full bandwidth.
///
/// File layout (little-endian): "VLMINDEX" magic, int32 version, int64 header length, UTF-8 JSON header
/// (dim, count, storage, entries, metadata), zero padding to a 64-byte boundary, then the vectors
/// (count × dim float32, or count × dim int8 followed by count float32 scales). Writes are atomic.
/// </summary>
public sealed class VectorIndex
{
    private const string Magic = "VLMINDEX";
    private const int Version = 1;
    private float[] _f32 = [];
    private sbyte[] _i8 = [];
    private float[] _scales = [];
    private readonly List<IndexEntry> _entries = new();

    public int Dim { get; }
    public VectorStorage Storage { get; }
    public int Count => _entries.Count;
    public IReadOnlyList<IndexEntry> Entries => _entries;
    public Dictionary<string, string> Metadata { get; } = new();

    public VectorIndex(int dim, VectorStorage storage = VectorStorage.Float32)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), "dimension must be positive");
        Dim = dim;
        Storage = storage;
    }

    public void Add(IndexEntry entry, ReadOnlySpan<float> vector)
    {
        if (vector.Length != Dim) throw new ArgumentException($"vector for '{entry.Id}' has {vector.Length} dims, index has {Dim}");
        foreach (var v in vector)
            if (!float.IsFinite(v)) throw new ArgumentException($"vector for '{entry.Id}' contains a non-finite value");
        int n = Count;
        if (Storage == VectorStorage.Float32)
        {
            Grow(ref _f32, (n + 1) * Dim);
            vector.CopyTo(_f32.AsSpan(n * Dim, Dim));
        }
        else
        {
            Grow(ref _i8, (n + 1) * Dim);
            Grow(ref _scales, n + 1);
            float max = MathF.Abs(TensorPrimitives.MaxMagnitude(vector)); // MaxMagnitude keeps the sign
            float scale = max > 0 ? max / 127f : 1f;
            var dst = _i8.AsSpan(n * Dim, Dim);
            for (int i = 0; i < Dim; i++) dst[i] = (sbyte)Math.Clamp((int)MathF.Round(vector[i] / scale), -127, 127);
            _scales[n] = scale;
        }
        _entries.Add(entry);
    }

    private static void Grow<T>(ref T[] arr, int need)
    {
        if (arr.Length >= need) return;
        Array.Resize(ref arr, Math.Max(need, Math.Max(16, arr.Length * 2)));
    }

    /// <summary>The k entries with the highest dot product with <paramref name="query"/>, best first
    /// (ties: lower index first). Rows are scored in parallel blocks; each block keeps its own heap.</summary>
    public List<SearchHit> Search(ReadOnlySpan<float> query, int k)
    {
        if (query.Length != Dim) throw new ArgumentException($"query has {query.Length} dims, index has {Dim}");
        if (k <= 0 || Count == 0) return new();
        k = Math.Min(k, Count);
        var q = query.ToArray();
        int n = Count;
        int blocks = n >= 4096 ? Environment.ProcessorCount * 4 : 1;
        var partial = new List<(float, int)>[blocks];
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, b =>
        {
            int s = (int)((long)n * b / blocks), e = (int)((long)n * (b + 1) / blocks);
            var heap = new PriorityQueue<int, (float score, int neg)>(k + 1);
            const int chunk = 256;
            Span<float> scores = stackalloc float[chunk];
            for (int r0 = s; r0 < e; r0 += chunk)
            {
                int m = Math.Min(chunk, e - r0);
                ScoreRows(q, r0, m, scores);
                for (int j = 0; j < m; j++)
                {
                    var key = (scores[j], -(r0 + j));
                    if (heap.Count < k) heap.Enqueue(r0 + j, key);
                    else if (Compare(key, PeekPriority(heap)) > 0) heap.EnqueueDequeue(r0 + j, key);
                }
            }
            var list = new List<(float, int)>(heap.Count);
            while (heap.TryDequeue(out var idx, out var pr)) list.Add((pr.score, idx));
            partial[b] = list;
        });
        return partial.SelectMany(p => p).OrderByDescending(p => p.Item1).ThenBy(p => p.Item2).Take(k)
            .Select(p => new SearchHit(p.Item2, p.Item1, _entries[p.Item2])).ToList();
    }

    private static (float score, int neg) PeekPriority(PriorityQueue<int, (float score, int neg)> heap)
    {
        heap.TryPeek(out _, out var pr);
        return pr;
    }

    private static int Compare((float score, int neg) a, (float score, int neg) b) =>
        a.score != b.score ? a.score.CompareTo(b.score) : a.neg.CompareTo(b.neg);

    private void ScoreRows(float[] q, int first, int m, Span<float> scores)
    {
        if (Storage == VectorStorage.Float32)
        {
            for (int j = 0; j < m; j++) scores[j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(_f32, (first + j) * Dim, Dim), q);
            return;
        }
        Span<float> row = stackalloc float[Dim <= 4096 ? Dim : 0];
        var rowBuf = Dim <= 4096 ? row : new float[Dim];
        for (int j = 0; j < m; j++)
        {
            TensorPrimitives.ConvertTruncating<sbyte, float>(new ReadOnlySpan<sbyte>(_i8, (first + j) * Dim, Dim), rowBuf);
            scores[j] = TensorPrimitives.Dot(rowBuf, q) * _scales[first + j];
        }
    }

    /// <summary>The stored vector of entry <paramref name="index"/> (dequantised for int8).</summary>
    public float[] Vector(int index)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
        if (Storage == VectorStorage.Float32) return _f32.AsSpan(index * Dim, Dim).ToArray();
        var v = new float[Dim];
        for (int i = 0; i < Dim; i++) v[i] = _i8[index * Dim + i] * _scales[index];
        return v;
    }

    public void Save(string path)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new HeaderJson
        {
            Dim = Dim, Count = Count, Storage = Storage == VectorStorage.Float32 ? "f32" : "i8",
            Entries = _entries.Select(e => new[] { e.Id, e.Source, e.Kind }).ToList(), Metadata = Metadata,
        });
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> pre = stackalloc byte[20];
                System.Text.Encoding.ASCII.GetBytes(Magic, pre);
                BinaryPrimitives.WriteInt32LittleEndian(pre[8..], Version);
                BinaryPrimitives.WriteInt64LittleEndian(pre[12..], header.Length);
                fs.Write(pre);
                fs.Write(header);
                int pad = (int)((64 - (20 + header.Length) % 64) % 64);
                fs.Write(new byte[pad]);
                int n = Count * Dim;
                if (Storage == VectorStorage.Float32) fs.Write(MemoryMarshal.AsBytes(_f32.AsSpan(0, n)));
                else
                {
                    fs.Write(MemoryMarshal.AsBytes(_i8.AsSpan(0, n)));
                    fs.Write(MemoryMarshal.AsBytes(_scales.AsSpan(0, Count)));
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

    public static VectorIndex Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"index file not found: {path}", path);
        var bytes = File.ReadAllBytes(path);
        InvalidDataException Bad(string why) => new($"{path}: {why}");
        if (bytes.Length < 20 || System.Text.Encoding.ASCII.GetString(bytes, 0, 8) != Magic) throw Bad("not a Vlm index (bad magic)");
        int version = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8));
        if (version != Version) throw Bad($"unsupported index version {version}");
        long hlen = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(12));
        if (hlen <= 0 || hlen > bytes.Length - 20) throw Bad($"header length {hlen} runs past the end of the file");
        HeaderJson h;
        try { h = JsonSerializer.Deserialize<HeaderJson>(bytes.AsSpan(20, (int)hlen)) ?? throw Bad("empty header"); }
        catch (JsonException e) { throw Bad($"header is not valid JSON ({e.Message})"); }
        if (h.Dim <= 0 || h.Count < 0 || h.Entries is null || h.Entries.Count != h.Count) throw Bad("header fields dim/count/entries are inconsistent");
        var storage = h.Storage switch { "f32" => VectorStorage.Float32, "i8" => VectorStorage.Int8, _ => throw Bad($"unknown storage '{h.Storage}'") };
        long start = 20 + hlen; start += (64 - start % 64) % 64;
        long n = (long)h.Count * h.Dim;
        long need = storage == VectorStorage.Float32 ? n * 4 : n + 4L * h.Count;
        if (n > int.MaxValue || start + need != bytes.Length) throw Bad($"data section is {bytes.Length - start} bytes, expected {need}");
        var idx = new VectorIndex(h.Dim, storage);
        foreach (var e in h.Entries)
        {
            if (e is not { Length: 3 } || e.Any(x => x is null)) throw Bad("malformed entry");
            idx._entries.Add(new IndexEntry(e[0], e[1], e[2]));
        }
        if (storage == VectorStorage.Float32) idx._f32 = MemoryMarshal.Cast<byte, float>(bytes.AsSpan((int)start, (int)need)).ToArray();
        else
        {
            idx._i8 = MemoryMarshal.Cast<byte, sbyte>(bytes.AsSpan((int)start, (int)n)).ToArray();
            idx._scales = MemoryMarshal.Cast<byte, float>(bytes.AsSpan((int)(start + n), 4 * h.Count)).ToArray();
        }
        foreach (var kv in h.Metadata ?? new()) idx.Metadata[kv.Key] = kv.Value;
        return idx;
    }

    private sealed class HeaderJson
    {
        public int Dim { get; set; }
        public int Count { get; set; }
        public string Storage { get; set; } = "f32";
        public List<string[]>? Entries { get; set; }
        public Dictionary<string, string>? Metadata { get; set; }
    }
}
