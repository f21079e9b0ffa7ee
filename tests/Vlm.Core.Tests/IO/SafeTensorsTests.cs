using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Core.Tests.IO;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A safetensors image from a literal header and data section (no padding, no validation).</summary>
    internal static byte[] Raw(string header, byte[]? data = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var b = new byte[8 + h.Length + (data?.Length ?? 0)];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        data?.CopyTo(b, 8 + h.Length);
        return b;
    }

    internal static Dictionary<string, Tensor> Sample() => new()
    {
        ["f"] = Tensor.FromArray(new float[] { 1.5f, -2, 3e-8f, float.MaxValue, 0, -0f }, 2, 3),
        ["l"] = Tensor.FromArray(new long[] { long.MinValue, -1, 0, long.MaxValue }, 4),
        ["i"] = Tensor.FromArray(new[] { int.MinValue, 7 }, 2, 1),
        ["u"] = Tensor.FromBytes(new byte[] { 0, 200, 255 }, DType.UInt8, 3),
        ["b"] = Tensor.FromArray(new[] { true, false }, 2),
        ["s"] = Tensor.FromArray(new float[] { 4 }),
        ["z"] = Tensor.Zeros([0, 5], DType.Float32),
    };

    private static void AssertSame(Tensor e, Tensor a, string name)
    {
        Assert.Equal(e.DType, a.DType);
        Assert.Equal(e.ShapeArray(), a.ShapeArray());
        var ec = e.Contiguous(); var ac = a.Contiguous();
        switch (e.DType)
        {
            case DType.Float32: Assert.Equal(ec.Span.ToArray(), ac.Span.ToArray()); break;
            case DType.Int64: Assert.Equal(ec.SpanI64.ToArray(), ac.SpanI64.ToArray()); break;
            case DType.Int32: Assert.Equal(ec.SpanI32.ToArray(), ac.SpanI32.ToArray()); break;
            default: Assert.Equal(ec.SpanU8.ToArray(), ac.SpanU8.ToArray()); break;
        }
        Assert.Equal(name, a.Name);
    }

    [Fact]
    public void RoundTripsEveryEngineDTypeThroughAFile()
    {
        var src = Sample();
        string path = Path.Combine(_dir, "m.safetensors");
        SafeTensors.Save(path, src, new Dictionary<string, string> { ["note"] = "hi" });
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(src.Keys, f.Names); // written in the given order
        foreach (var (k, t) in src) AssertSame(t, f.Load(k), k);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal("hi", f.Metadata["note"]);
        Assert.Equal("I64", f.Info("l").DType);
        Assert.Equal([4], f.Info("l").Shape);
        Assert.Equal("BOOL", f.Info("b").DType);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void HeaderIsPaddedTo8BytesWithSpacesAndDataIsAligned()
    {
        var bytes = SafeTensors.ToBytes(Sample());
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"}", header);
        using var doc = JsonDocument.Parse(header); // trailing spaces are valid JSON whitespace
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public void NonContiguousViewsAreWrittenInRowMajorOrder()
    {
        var b = Tensor.FromArray(Enumerable.Range(0, 60000).Select(i => (float)i).ToArray(), 300, 200);
        var t = b.Transpose(0, 1); // (200, 300), strides (1, 200); bigger than the writer's gather buffer
        var l = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (long)i).ToArray(), 3, 4).Transpose(0, 1);
        using var f = SafeTensorsFile.FromBytes(SafeTensors.ToBytes([new("t", t), new("l", l)]));
        AssertSame(t, f.Load("t"), "t");
        AssertSame(l, f.Load("l"), "l");
    }

    [Fact]
    public void SaveReplacesAtomicallyAndAFailedSaveLeavesTheOldFile()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        SafeTensors.Save(path, [new("x", Tensor.FromArray(new float[] { 1 }, 1))]);
        SafeTensors.Save(path, [new("y", Tensor.FromArray(new float[] { 2 }, 1))]);
        Assert.Equal(["y"], SafeTensors.Load(path).Keys);
        var gone = Tensor.FromArray(new long[] { 1, 2 }, 2);
        var disposed = Tensor.Ones(3).Add(Tensor.Ones(3));
        disposed.Dispose(); // its buffer went back to the pool: writing it fails half way
        Assert.ThrowsAny<Exception>(() => SafeTensors.Save(path, [new("ok", gone), new("bad", disposed)]));
        Assert.Equal(["y"], SafeTensors.Load(path).Keys);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void SaveRejectsDuplicateAndReservedNames()
    {
        var t = Tensor.Ones(1);
        Assert.Throws<ArgumentException>(() => SafeTensors.ToBytes([new("a", t), new("a", t)]));
        Assert.Throws<ArgumentException>(() => SafeTensors.ToBytes([new("__metadata__", t)]));
    }

    [Fact]
    public void TensorsOutliveTheMappingAndLoadAfterDisposeThrows()
    {
        string path = Path.Combine(_dir, "d.safetensors");
        SafeTensors.Save(path, Sample());
        var f = SafeTensorsFile.Open(path);
        var t = f.Load("f");
        f.Dispose();
        f.Dispose(); // idempotent
        Assert.Equal(1.5f, t.Span[0]);
        Assert.Throws<ObjectDisposedException>(() => f.Load("f"));
        File.Delete(path); // the mapping is released, so the file can go
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void ConvertsFloatingDTypesToFloat32()
    {
        var h = new Half[] { (Half)1.5f, (Half)(-0.25f), Half.PositiveInfinity };
        var hb = h.SelectMany(x => BitConverter.GetBytes(x)).ToArray();
        var bf = new float[] { 1f, -3.5f, 1e20f }.SelectMany(x => BitConverter.GetBytes((ushort)(BitConverter.SingleToInt32Bits(x) >> 16))).ToArray();
        var d = new double[] { 0.1, -1e300, 2 }.SelectMany(BitConverter.GetBytes).ToArray();
        var e5 = new byte[] { 0x3C, 0xC0, 0x7C }; // 1.0, -2.0, +inf (e5m2 = top byte of a half)
        var e4 = new byte[] { 0x38, 0xB8, 0x7E, 0x7F, 0x01 }; // 1.0, -1.0, 448, NaN, 2^-9
        var data = hb.Concat(bf).Concat(d).Concat(e5).Concat(e4).ToArray();
        var bytes = Raw("""{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"bf":{"dtype":"BF16","shape":[3],"data_offsets":[6,12]},"d":{"dtype":"F64","shape":[3],"data_offsets":[12,36]},"e5":{"dtype":"F8_E5M2","shape":[3],"data_offsets":[36,39]},"e4":{"dtype":"F8_E4M3","shape":[5],"data_offsets":[39,44]}}""", data);
        using var f = SafeTensorsFile.FromBytes(bytes);
        Assert.Equal(new[] { 1.5f, -0.25f, float.PositiveInfinity }, f.Load("h").Span.ToArray());
        Assert.Equal(new[] { 1f, -3.5f, BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(1e20f) & unchecked((int)0xFFFF0000)) }, f.Load("bf").Span.ToArray());
        Assert.Equal(new[] { 0.1f, float.NegativeInfinity, 2f }, f.Load("d").Span.ToArray());
        Assert.Equal(new[] { 1f, -2f, float.PositiveInfinity }, f.Load("e5").Span.ToArray());
        var e4v = f.Load("e4").Span.ToArray();
        Assert.Equal(new[] { 1f, -1f, 448f }, e4v[..3]);
        Assert.True(float.IsNaN(e4v[3]));
        Assert.Equal(MathF.Pow(2, -9), e4v[4]);
        Assert.Equal("F16", f.Info("h").DType);
        Assert.Equal(DType.Float32, f.Load("bf").DType);
    }

    [Fact]
    public void WidensOtherIntegerDTypes()
    {
        var data = new byte[] { 0x80, 0x7F }                              // I8: -128, 127
            .Concat(BitConverter.GetBytes((short)-30000)).Concat(BitConverter.GetBytes((short)5))
            .Concat(BitConverter.GetBytes((ushort)65535)).Concat(BitConverter.GetBytes((ushort)1))
            .Concat(BitConverter.GetBytes(uint.MaxValue))
            .Concat(BitConverter.GetBytes((ulong)long.MaxValue)).ToArray();
        var bytes = Raw("""{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"I16","shape":[2],"data_offsets":[2,6]},"c":{"dtype":"U16","shape":[2],"data_offsets":[6,10]},"d":{"dtype":"U32","shape":[1],"data_offsets":[10,14]},"e":{"dtype":"U64","shape":[1],"data_offsets":[14,22]}}""", data);
        using var f = SafeTensorsFile.FromBytes(bytes);
        Assert.Equal(new[] { -128, 127 }, f.Load("a").SpanI32.ToArray());
        Assert.Equal(new[] { -30000, 5 }, f.Load("b").SpanI32.ToArray());
        Assert.Equal(new[] { 65535, 1 }, f.Load("c").SpanI32.ToArray());
        Assert.Equal(new[] { (long)uint.MaxValue }, f.Load("d").SpanI64.ToArray());
        Assert.Equal(new[] { long.MaxValue }, f.Load("e").SpanI64.ToArray());

        var big = Raw("""{"e":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}}""", BitConverter.GetBytes(ulong.MaxValue));
        using var g = SafeTensorsFile.FromBytes(big, "big.safetensors");
        var ex = Assert.Throws<InvalidDataException>(() => g.Load("e"));
        Assert.Contains("big.safetensors", ex.Message);
        Assert.Contains("'e'", ex.Message);
    }

    public static TheoryData<string, byte[], string> CorruptFiles()
    {
        var d8 = new byte[8];
        var huge = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        var past = Raw("{}");
        BinaryPrimitives.WriteUInt64LittleEndian(past, 50);
        return new()
        {
            { "empty", [], "empty" },
            { "short", [1, 2, 3], "shorter than" },
            { "huge header length", huge, "limit" },
            { "header past end", past, "past the end of the file" },
            { "not json", Raw("{nope"), "not valid JSON" },
            { "not an object", Raw("[1]  "), "start with '{'" },
            { "bad utf8", Raw("{\"a\xff\":1}").Select(b => b == 0xC3 ? (byte)0xFF : b).ToArray(), "JSON" },
            { "lone surrogate", Raw("""{"\ud800":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", new byte[4]), "JSON" },
            { "control char name", Raw("""{"a\u0001b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", new byte[4]), "control character" },
            { "empty name", Raw("""{"":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", new byte[4]), "empty name" },
            { "duplicate", Raw("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", d8), "duplicate tensor name" },
            { "unknown dtype", Raw("""{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}""", new byte[4]), "unknown or unsupported dtype 'Q4'" },
            { "missing dtype", Raw("""{"w":{"shape":[1],"data_offsets":[0,4]}}""", new byte[4]), "dtype" },
            { "negative dim", Raw("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", new byte[4]), "negative" },
            { "absurd dim", Raw("""{"w":{"dtype":"F32","shape":[99999999999],"data_offsets":[0,4]}}""", new byte[4]), "too large" },
            { "fractional dim", Raw("""{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", new byte[4]), "not an integer" },
            { "too many elements", Raw("""{"w":{"dtype":"U8","shape":[65536,65536],"data_offsets":[0,4]}}""", new byte[4]), "more than" },
            { "numel mismatch", Raw("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", new byte[4]), "needs 8" },
            { "offsets past end", Raw("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", new byte[4]), "past the end of the data" },
            { "offsets reversed", Raw("""{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}""", new byte[4]), "increasing" },
            { "offsets not a pair", Raw("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", new byte[4]), "pair" },
            { "overlap", Raw("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", d8), "overlap" },
            { "hole", Raw("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", d8), "belong to no tensor" },
            { "trailing bytes", Raw("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", d8), "unreferenced" },
            { "metadata not strings", Raw("""{"__metadata__":{"a":1}}"""), "not a string" },
            { "entry not object", Raw("""{"w":3}"""), "not an object" },
        };
    }

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void CorruptHeadersAreInvalidDataNamingFileAndTensor(string what, byte[] bytes, string expected)
    {
        var ex = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.FromBytes(bytes, $"bad-{what}.safetensors"));
        Assert.Contains($"bad-{what}.safetensors", ex.Message);
        Assert.Contains(expected, ex.Message);
        if (ex.Message.Contains("tensor '")) Assert.Matches("tensor '[^']*'", ex.Message);
    }

    [Fact]
    public void ErrorsAboutATensorNameIt()
    {
        var ex = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.FromBytes(
            Raw("""{"enc.w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", new byte[4]), "x.safetensors"));
        Assert.Contains("tensor 'enc.w'", ex.Message);
    }

    [Fact]
    public void EmptyFileOnDiskAndMissingFile()
    {
        string p = Path.Combine(_dir, "empty.safetensors");
        File.WriteAllBytes(p, []);
        Assert.Contains("empty", Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(p)).Message);
        Assert.Throws<FileNotFoundException>(() => SafeTensorsFile.Open(Path.Combine(_dir, "nope.safetensors")));
    }

    [Fact]
    public void AcceptsEmptyTensorsAnywhereAndUnicodeNames()
    {
        var bytes = Raw("""{"é名":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,2],"data_offsets":[4,4]}}   """, BitConverter.GetBytes(2f));
        using var f = SafeTensorsFile.FromBytes(bytes);
        Assert.Equal(2f, f.Load("é名").Span[0]);
        Assert.Equal([0, 2], f.Load("z").ShapeArray());
    }

    [Fact]
    public void ReadsAReferenceFixtureWrittenByHfSafetensors()
    {
        // Any fixture file will do: they were written by the Python safetensors package.
        var file = Directory.EnumerateFiles(Fixtures.Root, "*.safetensors", SearchOption.AllDirectories).OrderBy(x => x).First();
        using var f = SafeTensorsFile.Open(file);
        Assert.NotEmpty(f.Names);
        foreach (var n in f.Names.Take(5)) Assert.Equal(f.Info(n).Shape, f.Load(n).ShapeArray());
        // Our writer's output round-trips byte for byte in content.
        var all = f.LoadAll();
        using var g = SafeTensorsFile.FromBytes(SafeTensors.ToBytes(all));
        foreach (var n in f.Names.Take(5)) TensorAssert.Close(f.Load(n).ToArray(), g.Load(n).ToArray(), 0, 0);
    }

    [Fact]
    public void EveryReferenceFixtureOpensUnderTheStrictHeaderChecks()
    {
        // Headers only (the data stays mapped, unread): the strict no-holes rule must accept what HF writes.
        int n = 0;
        foreach (var file in Directory.EnumerateFiles(Fixtures.Root, "*.safetensors", SearchOption.AllDirectories))
        {
            using var f = SafeTensorsFile.Open(file);
            n++;
        }
        Assert.True(n > 0);
    }
}
