using System.IO.Compression;
using System.Text;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Core.Tests.IO;

/// <summary>Against checkpoints written by torch 1.13 (Data/make_pt_files.py) and hand-written pickles.</summary>
public sealed class PyTorchBinFileTests : IDisposable
{
    internal static string Data(string file) => Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Core.Tests", "Data", file);

    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-pt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void LoadsEveryTensorOfATorchSaveStateDictExactly()
    {
        using var expected = SafeTensorsFile.Open(Data("expected_pt.safetensors"));
        using var f = PyTorchBinFile.Open(Data("pt_basic.bin"));
        string[] names = ["f32", "f16", "bf16", "f64", "i64", "i32", "u8", "bool", "i16", "i8", "transposed", "narrowed",
                          "embed.weight", "lm_head.weight", "row2", "scalar", "empty", "expanded"];
        Assert.Equal(names, f.Names); // state-dict order
        foreach (var n in names)
        {
            var e = expected.Load(n);
            var a = f.Load(n);
            Assert.Equal(e.DType, a.DType);
            Assert.Equal(e.ShapeArray(), a.ShapeArray());
            Assert.True(a.IsContiguous);
            switch (e.DType)
            {
                case DType.Float32: Assert.Equal(e.Span.ToArray(), a.Span.ToArray()); break;
                case DType.Int64: Assert.Equal(e.SpanI64.ToArray(), a.SpanI64.ToArray()); break;
                case DType.Int32: Assert.Equal(e.SpanI32.ToArray(), a.SpanI32.ToArray()); break;
                default: Assert.Equal(e.SpanU8.ToArray(), a.SpanU8.ToArray()); break;
            }
        }
        Assert.Equal("F16", f.Info("f16").DType);
        Assert.Equal("BF16", f.Info("bf16").DType);
        Assert.Equal([6, 5], f.Info("transposed").Shape);
        // Tied weights load as equal but independent tensors.
        var a1 = f.Load("embed.weight"); var a2 = f.Load("lm_head.weight");
        a1.Span[0] = 1234;
        Assert.NotEqual(1234, a2.Span[0]);
    }

    [Fact]
    public void FlattensNestedDictsAndUnwrapsParameters()
    {
        using var expected = SafeTensorsFile.Open(Data("expected_pt.safetensors"));
        using var f = PyTorchBinFile.Open(Data("pt_nested.bin"));
        Assert.Equal(["model.w", "model.b"], f.Names);
        Assert.Equal(expected.Load("model.w").Span.ToArray(), f.Load("model.w").Span.ToArray());
        Assert.Equal(expected.Load("model.b").Span.ToArray(), f.Load("model.b").Span.ToArray());
    }

    [Fact]
    public void RefusesAMaliciousPickleWithoutRunningIt()
    {
        var ex = Assert.Throws<InvalidDataException>(() => PyTorchBinFile.Open(Data("pt_malicious.bin")));
        Assert.Contains("refusing to execute pickle global os.system", ex.Message);
        Assert.Contains("pt_malicious.bin", ex.Message);
    }

    [Fact]
    public void RejectsTheLegacyFormatClearly()
    {
        var ex = Assert.Throws<InvalidDataException>(() => PyTorchBinFile.Open(Data("pt_legacy.bin")));
        Assert.Contains("legacy", ex.Message);
        Assert.Contains("pt_legacy.bin", ex.Message);
    }

    internal static byte[] Zip(params (string Name, byte[] Data)[] entries)
    {
        var ms = new MemoryStream();
        using (var z = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (n, d) in entries)
            {
                using var s = z.CreateEntry(n, CompressionLevel.NoCompression).Open();
                s.Write(d);
            }
        return ms.ToArray();
    }

    /// <summary>Pickle of {"w": _rebuild_tensor_v2(storage(key, numel), offset, size, stride, False, OrderedDict())}.</summary>
    internal static byte[] TensorPickle(string storage, string key, int numel, int offset, int[] size, int[] stride)
    {
        var p = new List<byte> { 0x80, 2, (byte)'}', (byte)'(' };
        void Str(string s) { var b = Encoding.UTF8.GetBytes(s); p.Add((byte)'X'); p.AddRange(BitConverter.GetBytes(b.Length)); p.AddRange(b); }
        void Int(int v) { p.Add((byte)'J'); p.AddRange(BitConverter.GetBytes(v)); }
        void Glob(string m, string n) { p.Add((byte)'c'); p.AddRange(Encoding.ASCII.GetBytes(m + "\n" + n + "\n")); }
        void Tuple(int[] xs) { p.Add((byte)'('); foreach (var x in xs) Int(x); p.Add((byte)'t'); }
        Str("w");
        Glob("torch._utils", "_rebuild_tensor_v2");
        p.Add((byte)'(');
        p.Add((byte)'('); Str("storage"); Glob("torch", storage); Str(key); Str("cpu"); Int(numel); p.Add((byte)'t');
        p.Add((byte)'Q');
        Int(offset); Tuple(size); Tuple(stride); p.Add(0x89);
        Glob("collections", "OrderedDict"); p.Add((byte)')'); p.Add((byte)'R');
        p.Add((byte)'t'); p.Add((byte)'R');
        p.Add((byte)'u'); p.Add((byte)'.');
        return p.ToArray();
    }

    [Fact]
    public void HonoursOffsetsAndStridesOfHandWrittenViews()
    {
        var storage = Enumerable.Range(0, 12).SelectMany(i => BitConverter.GetBytes((float)i)).ToArray();
        // A (2, 3) view at offset 1 with strides (4, 2): elements 1,3,5 / 5,7,9.
        var bytes = Zip(("a/data.pkl", TensorPickle("FloatStorage", "0", 12, 1, [2, 3], [4, 2])), ("a/data/0", storage));
        using var f = PyTorchBinFile.FromBytes(bytes, "view.bin");
        Assert.Equal(new float[] { 1, 3, 5, 5, 7, 9 }, f.Load("w").Span.ToArray());
    }

    public static TheoryData<string, byte[], string> CorruptArchives()
    {
        var storage = new byte[48];
        return new()
        {
            { "view past storage", Zip(("a/data.pkl", TensorPickle("FloatStorage", "0", 12, 10, [2, 3], [3, 1])), ("a/data/0", storage)), "reaches past the end of storage" },
            { "storage size mismatch", Zip(("a/data.pkl", TensorPickle("FloatStorage", "0", 13, 0, [2], [1])), ("a/data/0", storage)), "entry is 48 bytes" },
            { "missing storage", Zip(("a/data.pkl", TensorPickle("FloatStorage", "7", 12, 0, [2], [1])), ("a/data/0", storage)), "no entry a/data/7" },
            { "unknown storage type", Zip(("a/data.pkl", TensorPickle("QInt8Storage", "0", 12, 0, [2], [1])), ("a/data/0", storage)), "refusing to execute pickle global torch.QInt8Storage" },
            { "key with a path", Zip(("a/data.pkl", TensorPickle("FloatStorage", "../x", 12, 0, [2], [1])), ("a/data/0", storage)), "not a plain name" },
            { "negative stride", Zip(("a/data.pkl", TensorPickle("FloatStorage", "0", 12, 0, [2], [-1])), ("a/data/0", storage)), "stride" },
            { "no data.pkl", Zip(("a/other", [1])), "no <folder>/data.pkl" },
            { "torchscript", Zip(("a/constants.pkl", [0x80, 2, (byte)'.']), ("a/code/m.py", [1])), "TorchScript" },
            { "two pickles", Zip(("a/data.pkl", [0x80, 2, (byte)'}', (byte)'.']), ("b/data.pkl", [0x80, 2, (byte)'}', (byte)'.'])), "2 data.pkl" },
            { "not a dict", Zip(("a/data.pkl", [0x80, 2, (byte)'N', (byte)'.'])), "not a dict" },
            { "big endian", Zip(("a/data.pkl", [0x80, 2, (byte)'}', (byte)'.']), ("a/byteorder", Encoding.ASCII.GetBytes("big"))), "little-endian" },
            { "not a zip", Encoding.ASCII.GetBytes("hello world"), "not a torch.save zip" },
            { "empty", [], "empty" },
            { "truncated zip", Zip(("a/data.pkl", [0x80, 2, (byte)'}', (byte)'.']))[..30], "zip" },
        };
    }

    [Theory]
    [MemberData(nameof(CorruptArchives))]
    public void CorruptArchivesAreInvalidDataNamingTheFile(string what, byte[] bytes, string expected)
    {
        var ex = Assert.Throws<InvalidDataException>(() => PyTorchBinFile.FromBytes(bytes, $"bad-{what}.bin"));
        Assert.Contains($"bad-{what}.bin", ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void ShardedBinIndexAndCheckpointLoader()
    {
        File.Copy(Data("pt_basic.bin"), Path.Combine(_dir, "pytorch_model-00001-of-00002.bin"));
        File.Copy(Data("pt_nested.bin"), Path.Combine(_dir, "pytorch_model-00002-of-00002.bin"));
        File.WriteAllText(Path.Combine(_dir, "pytorch_model.bin.index.json"),
            """{"metadata":{"total_size":100},"weight_map":{"f32":"pytorch_model-00001-of-00002.bin","model.w":"pytorch_model-00002-of-00002.bin"}}""");
        using (var w = CheckpointLoader.Open(_dir))
        {
            Assert.IsType<ShardedCheckpoint>(w);
            Assert.Equal(["f32", "model.w"], w.Names);
            using var e = SafeTensorsFile.Open(Data("expected_pt.safetensors"));
            Assert.Equal(e.Load("model.w").Span.ToArray(), w.Load("model.w").Span.ToArray());
        }
        File.Copy(Data("pt_basic.bin"), Path.Combine(_dir, "pytorch_model.bin"));
        using (var w = CheckpointLoader.Open(_dir)) Assert.IsType<PyTorchBinFile>(w);
        SafeTensors.Save(Path.Combine(_dir, "model.safetensors"), [new("x", Tensor.Ones(2))]);
        using (var w = CheckpointLoader.Open(_dir)) Assert.IsType<SafeTensorsFile>(w);
        using (var w = CheckpointLoader.Open(Path.Combine(_dir, "pytorch_model.bin"))) Assert.IsType<PyTorchBinFile>(w);

        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var ex = Assert.Throws<FileNotFoundException>(() => CheckpointLoader.Open(empty));
        foreach (var c in CheckpointLoader.Candidates) Assert.Contains(c, ex.Message);
    }
}
