using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Core.Tests.IO;

public sealed class ShardedCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-sh-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<KeyValuePair<string, Tensor>> Model() =>
        Enumerable.Range(0, 7).Select(i => new KeyValuePair<string, Tensor>($"layer.{i}.w",
            Tensor.FromArray(Enumerable.Range(0, 10 * (i + 1)).Select(j => (float)(i * 1000 + j)).ToArray(), i + 1, 10))).ToList();

    [Fact]
    public void SavesShardsBySizeAndReadsThemBack()
    {
        var model = Model(); // tensors of 40, 80, ..., 280 bytes
        string index = SafeTensors.SaveSharded(_dir, model, maxShardBytes: 300);
        Assert.Equal(Path.Combine(_dir, "model.safetensors.index.json"), index);
        using var w = ShardedSafeTensors.Open(index);
        // Greedy packing: [40,80,120] [160] [200] [240] [280]
        Assert.Equal(["model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors", "model-00003-of-00005.safetensors",
                      "model-00004-of-00005.safetensors", "model-00005-of-00005.safetensors"], w.ShardFiles);
        Assert.Equal(model.Select(m => m.Key).Order(StringComparer.Ordinal), w.Names.Order(StringComparer.Ordinal));
        Assert.Equal((40 + 280) * 7 / 2, long.Parse(w.Metadata["total_size"]));
        foreach (var (k, t) in model) Assert.Equal(t.Span.ToArray(), w.Load(k).Span.ToArray());
        Assert.Equal([3, 10], w.Info("layer.2.w").Shape);
        Assert.Throws<KeyNotFoundException>(() => w.Load("nope"));
        foreach (var f in Directory.GetFiles(_dir, "model-*"))
            using (var s = SafeTensorsFile.Open(f)) Assert.Equal("pt", s.Metadata["format"]);
    }

    [Fact]
    public void ATensorLargerThanTheLimitGetsItsOwnShardAndStaleShardsAreRemoved()
    {
        SafeTensors.SaveSharded(_dir, Model(), maxShardBytes: 300);
        SafeTensors.SaveSharded(_dir, Model(), maxShardBytes: 10);
        Assert.Equal(7, Directory.GetFiles(_dir, "model-*-of-00007.safetensors").Length);
        Assert.Empty(Directory.GetFiles(_dir, "model-*-of-00005.safetensors"));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
        using var w = CheckpointLoader.Open(_dir);
        Assert.Equal(7, w.Names.Count);
    }

    private string Index(string json)
    {
        string p = Path.Combine(_dir, "model.safetensors.index.json");
        File.WriteAllText(p, json);
        return p;
    }

    [Fact]
    public void IndexErrorsNameTheIndexAndTheProblem()
    {
        SafeTensors.Save(Path.Combine(_dir, "s1.safetensors"), [new("a", Tensor.Ones(2))]);
        void Expect(string json, string what)
        {
            var ex = Assert.Throws<InvalidDataException>(() => ShardedSafeTensors.Open(Index(json)));
            Assert.Contains("model.safetensors.index.json", ex.Message);
            Assert.Contains(what, ex.Message);
        }
        Expect("""{"weight_map":{"a":"s2.safetensors"}}""", "shard 's2.safetensors' (holding tensor 'a') is missing");
        Expect("""{"weight_map":{"b":"s1.safetensors"}}""", "tensor 'b' is listed in the index but missing from shard 's1.safetensors'");
        Expect("""{"weight_map":{"a":"../s1.safetensors"}}""", "not a plain file name");
        Expect("""{"weight_map":{"a":"/etc/passwd"}}""", "not a plain file name");
        Expect("""{"weight_map":{"a":3}}""", "not a file name");
        Expect("""{"metadata":{}}""", "no 'weight_map'");
        Expect("""{"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}}""", "twice");
        Expect("""{"weight_map":""", "not valid JSON");
        Expect("[]", "not a JSON object");
        using var ok = ShardedSafeTensors.Open(Index("""{"metadata":{"total_size":8},"weight_map":{"a":"s1.safetensors"}}"""));
        Assert.Equal(new float[] { 1, 1 }, ok.Load("a").Span.ToArray());
    }

    [Fact]
    public void ACorruptShardIsInvalidDataNamingTheShard()
    {
        File.WriteAllBytes(Path.Combine(_dir, "s1.safetensors"), [1, 2, 3]);
        var ex = Assert.Throws<InvalidDataException>(() => ShardedSafeTensors.Open(Index("""{"weight_map":{"a":"s1.safetensors"}}""")));
        Assert.Contains("s1.safetensors", ex.Message);
    }

    [Fact]
    public void StreamingSaveFromASourceConvertsDTypesAndShards()
    {
        // A source whose floats are stored as F16 and BF16: written back as F32, one tensor at a time.
        var h = new Half[] { (Half)1, (Half)(-2) }.SelectMany(x => BitConverter.GetBytes(x)).ToArray();
        var bf = BitConverter.GetBytes((ushort)0x4040); // 3.0 in bfloat16
        var bytes = SafeTensorsTests.Raw("""{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},"i":{"dtype":"I16","shape":[1],"data_offsets":[6,8]}}""",
            [.. h, .. bf, 0xFF, 0xFF]);
        using var src = SafeTensorsFile.FromBytes(bytes);
        string one = Path.Combine(_dir, "one.safetensors");
        SafeTensors.Save(one, src);
        using (var f = SafeTensorsFile.Open(one))
        {
            Assert.Equal("F32", f.Info("h").DType);
            Assert.Equal(new float[] { 1, -2 }, f.Load("h").Span.ToArray());
            Assert.Equal(new float[] { 3 }, f.Load("b").Span.ToArray());
            Assert.Equal("I32", f.Info("i").DType);
            Assert.Equal(new[] { -1 }, f.Load("i").SpanI32.ToArray());
        }
        string index = SafeTensors.SaveSharded(Path.Combine(_dir, "sh"), src, maxShardBytes: 8);
        using var w = ShardedSafeTensors.Open(index);
        Assert.Equal(2, w.ShardFiles.Count); // 8 bytes | 4 + 4 bytes
        Assert.Equal(new float[] { 3 }, w.Load("b").Span.ToArray());
        Assert.Equal("16", w.Metadata["total_size"]);
    }
}
