using System.IO.Compression;

namespace Vlm.Core.IO;

/// <summary>
/// A torch.save checkpoint (pytorch_model.bin, torch ≥ 1.6 zip format): a zip holding &lt;top&gt;/data.pkl (the
/// pickled state dict, where each tensor is a _rebuild_tensor_v2 call over a persistent storage id) and
/// &lt;top&gt;/data/&lt;key&gt; (each storage's raw little-endian bytes). The pickle is read by the restricted
/// <see cref="Unpickler"/> — nothing in the file is executed. Nested dicts are flattened with '.' ("model.x.weight");
/// non-tensor values are ignored. Tensor data is read on demand, honouring storage offset and strides, so
/// transposed views and tensors sharing one storage (tied weights) load as torch would give them.
/// The pre-1.6 (non-zip) format and TorchScript archives are rejected with a message saying so.
/// </summary>
public sealed class PyTorchBinFile : IWeightSource
{
    /// <summary>data.pkl above this is not a state dict (a state dict's pickle is small: the data lives elsewhere).</summary>
    private const long MaxPickleBytes = 256L << 20;

    private readonly Stream _stream;
    private readonly ZipArchive _zip;
    private readonly string _prefix;
    private readonly Dictionary<string, TorchTensorRef> _tensors;
    private readonly Lock _lock = new();
    private bool _disposed;

    public string Origin { get; }
    public IReadOnlyCollection<string> Names { get; }

    private PyTorchBinFile(string origin, Stream stream)
    {
        Origin = origin;
        _stream = stream;
        try
        {
            Span<byte> magic = stackalloc byte[4];
            int got = stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
            stream.Position = 0;
            if (got == 0) throw Bad("file is empty");
            if (got < 4 || magic[0] != 'P' || magic[1] != 'K' || magic[2] != 3 || magic[3] != 4)
                throw Bad(magic[0] == 0x80
                    ? "this is the legacy (pre-1.6, non-zip) torch.save format, which is not supported; re-save it with torch >= 1.6 (or convert it to safetensors in Python)"
                    : "not a torch.save zip archive (no zip signature)");
            _zip = Guard(() => new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true), null);
            var pkls = _zip.Entries.Where(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal)
                                               && e.FullName.IndexOf('/') == e.FullName.Length - "/data.pkl".Length).ToList();
            if (pkls.Count == 0)
            {
                bool script = _zip.Entries.Any(e => e.FullName.EndsWith("/constants.pkl", StringComparison.Ordinal) || e.FullName.Contains("/code/"));
                throw Bad(script ? "this is a TorchScript archive (torch.jit.save), not a state dict; save model.state_dict() with torch.save"
                                 : "no <folder>/data.pkl entry: not a torch.save archive");
            }
            if (pkls.Count > 1) throw Bad($"{pkls.Count} data.pkl entries ({string.Join(", ", pkls.Select(p => p.FullName))})");
            _prefix = pkls[0].FullName[..^"data.pkl".Length];
            var order = _zip.GetEntry(_prefix + "byteorder");
            if (order != null)
            {
                string bo = System.Text.Encoding.ASCII.GetString(ReadEntry(order, 16, null)).Trim();
                if (bo != "little") throw Bad($"byteorder is '{bo}'; only little-endian checkpoints are supported");
            }
            byte[] pkl = ReadEntry(pkls[0], MaxPickleBytes, null);
            var root = Unpickler.Load(pkl, $"{origin} ({pkls[0].FullName})");
            _tensors = new Dictionary<string, TorchTensorRef>(StringComparer.Ordinal);
            var names = new List<string>();
            if (root is not PyDict rootDict) throw Bad($"the pickled object is {Unpickler.Describe(root)}, not a dict of tensors");
            int budget = MaxVisits;
            Flatten(rootDict, "", 0, names, new HashSet<object>(ReferenceEqualityComparer.Instance), ref budget);
            foreach (var n in names) Validate(n, _tensors[n]);
            Names = names;
        }
        catch
        {
            _zip?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    public static PyTorchBinFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"pytorch checkpoint not found: {path}", path);
        return new PyTorchBinFile(path, new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16));
    }

    public static PyTorchBinFile FromBytes(byte[] bytes, string origin = "<bytes>") => new(origin, new MemoryStream(bytes, writable: false));

    private InvalidDataException Bad(string what, string? tensor = null) =>
        new($"{Origin}: {(tensor is null ? "" : $"tensor '{tensor}': ")}{what}");

    /// <summary>Zip-layer failures other than InvalidDataException (truncation, bad sizes, unknown compression) become one.</summary>
    private T Guard<T>(Func<T> f, string? tensor)
    {
        try { return f(); }
        catch (InvalidDataException e) when (!e.Message.StartsWith(Origin, StringComparison.Ordinal)) { throw Bad($"corrupt zip: {e.Message}", tensor); }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException or InvalidOperationException or OverflowException or FormatException)
        {
            throw Bad($"corrupt zip: {e.Message}", tensor);
        }
    }

    private byte[] ReadEntry(ZipArchiveEntry entry, long max, string? tensor) => Guard(() =>
    {
        if (entry.Length > max) throw Bad($"entry {entry.FullName} is {entry.Length} bytes (limit {max})", tensor);
        var buf = new byte[entry.Length];
        using var s = entry.Open();
        s.ReadExactly(buf);
        return buf;
    }, tensor);

    /// <summary>A dict may be shared (memoized) under several keys, so a hostile pickle could make the flattened
    /// tree exponentially larger than itself; a visit budget keeps that from hanging.</summary>
    private const int MaxVisits = 1_000_000;

    private void Flatten(PyDict d, string prefix, int depth, List<string> names, HashSet<object> seen, ref int budget)
    {
        if (depth > 32) throw Bad("dicts nested more than 32 deep");
        if (!seen.Add(d)) throw Bad("the pickled dict contains itself");
        foreach (var (k, v) in d.Items)
        {
            if (--budget < 0) throw Bad($"the pickled dicts flatten to more than {MaxVisits} entries");
            string key = k switch { string s => s, long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture), _ => "" };
            if (key.Length == 0) continue; // non-string keys (tuples...) hold no state-dict tensors
            string name = prefix.Length == 0 ? key : prefix + "." + key;
            switch (v)
            {
                case TorchTensorRef t:
                    if (!_tensors.TryAdd(name, t)) throw Bad($"two tensors flatten to the name '{name}'");
                    names.Add(name);
                    break;
                case PyDict sub:
                    Flatten(sub, name, depth + 1, names, seen, ref budget);
                    break;
            }
        }
        seen.Remove(d);
    }

    private void Validate(string name, TorchTensorRef t)
    {
        var entry = _zip.GetEntry(_prefix + "data/" + t.Storage.Key)
                    ?? throw Bad($"storage '{t.Storage.Key}' has no entry {_prefix}data/{t.Storage.Key} in the zip", name);
        int es = DTypeCodec.ElementSize(t.Storage.DType)!.Value;
        if (t.Storage.Numel > long.MaxValue / es || entry.Length != t.Storage.Numel * es)
            throw Bad($"storage '{t.Storage.Key}' entry is {entry.Length} bytes but {t.Storage.Numel} {t.Storage.DType} elements need {t.Storage.Numel * (decimal)es}", name);
        long numel = 1;
        foreach (int s in t.Size) numel = numel * s > int.MaxValue ? long.MaxValue : numel * s;
        if (numel > int.MaxValue) throw Bad($"shape {ShapeUtil.Format(t.Size)} has more than {int.MaxValue} elements", name);
        if (numel == 0) return;
        if (Extent(t) > t.Storage.Numel)
            throw Bad($"view (offset {t.Offset}, size {ShapeUtil.Format(t.Size)}, stride ({string.Join(", ", t.Stride)})) reaches past the end of storage '{t.Storage.Key}' ({t.Storage.Numel} elements)", name);
    }

    /// <summary>One past the last storage element the view touches (sizes ≤ int.MaxValue and strides ≤ int.MaxValue keep this in range).</summary>
    private static decimal Extent(TorchTensorRef t)
    {
        decimal last = t.Offset;
        for (int i = 0; i < t.Size.Length; i++) last += (decimal)(t.Size[i] - 1) * t.Stride[i];
        return last + 1;
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorInfo Info(string name) =>
        _tensors.TryGetValue(name, out var t) ? new TensorInfo(name, t.Storage.DType, (int[])t.Size.Clone())
            : throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");

    public Tensor Load(string name)
    {
        if (!_tensors.TryGetValue(name, out var t)) throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");
        string dtype = t.Storage.DType;
        int es = DTypeCodec.ElementSize(dtype)!.Value;
        int numel = ShapeUtil.Numel(t.Size);
        var dst = DTypeCodec.Allocate(dtype, numel);
        if (numel > 0)
        {
            long first = t.Offset, count = (long)Extent(t) - first;
            if (count * es > Array.MaxLength || (long)numel * es > Array.MaxLength) throw Bad($"view spans {count * es} bytes of its storage, more than one read can hold", name);
            byte[] raw = new byte[count * es];
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                var entry = _zip.GetEntry(_prefix + "data/" + t.Storage.Key)!;
                Guard(() =>
                {
                    using var s = entry.Open();
                    long skip = first * es;
                    if (s.CanSeek) s.Seek(skip, SeekOrigin.Begin);
                    else
                    {
                        var scratch = new byte[Math.Min(skip, 1 << 20)];
                        while (skip > 0) { int r = s.Read(scratch, 0, (int)Math.Min(skip, scratch.Length)); if (r == 0) throw new EndOfStreamException(); skip -= r; }
                    }
                    s.ReadExactly(raw);
                    return 0;
                }, name);
            }
            byte[] packed = IsDense(t) ? raw : GatherStrided(raw, t, es, numel);
            string? err = DTypeCodec.Decode(dtype, packed, dst, 0);
            if (err != null) throw Bad(err, name);
        }
        var tensor = DTypeCodec.Wrap(dtype, dst, t.Size);
        tensor.Name = name;
        return tensor;
    }

    /// <summary>Row-major contiguous strides (size-1 dims may have any stride).</summary>
    private static bool IsDense(TorchTensorRef t)
    {
        long expect = 1;
        for (int i = t.Size.Length - 1; i >= 0; i--)
        {
            if (t.Size[i] != 1 && t.Stride[i] != expect) return false;
            expect *= t.Size[i];
        }
        return true;
    }

    /// <summary>Copies a strided view's elements (relative to its first element in <paramref name="raw"/>) into row-major order.</summary>
    private static byte[] GatherStrided(byte[] raw, TorchTensorRef t, int es, int numel)
    {
        var outBytes = new byte[(long)numel * es];
        int rank = t.Size.Length;
        var idx = new int[rank];
        long off = 0;
        for (int i = 0; i < numel; i++)
        {
            Buffer.BlockCopy(raw, (int)(off * es), outBytes, i * es, es);
            for (int d = rank - 1; d >= 0; d--)
            {
                if (++idx[d] < t.Size[d]) { off += t.Stride[d]; break; }
                off -= t.Stride[d] * (t.Size[d] - 1);
                idx[d] = 0;
            }
        }
        return outBytes;
    }

    public Dictionary<string, Tensor> LoadAll() => Names.ToDictionary(n => n, Load);

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _zip.Dispose();
            _stream.Dispose();
        }
    }
}
