using System.Text;
using Vlm.Core.IO;

namespace Vlm.Core.Tests.IO;

public sealed class UnpicklerTests
{
    private static byte[] P(params object[] parts) =>
        parts.SelectMany(p => p switch { string s => Encoding.Latin1.GetBytes(s), byte b => [b], int i => [(byte)i], byte[] a => a, _ => throw new ArgumentException() }).ToArray();

    [Fact]
    public void BuildsPlainValues()
    {
        // {'a': [1, -2, 300, 70000, True, None, 1.5, (), 2**40], 'b': {}} via protocol-2 and protocol-4 opcodes
        var pkl = P(0x80, 4, 0x95, new byte[8], "}", 0x94, "(", 0x8C, 1, "a", "]", "(", "K", 1, "J", BitConverter.GetBytes(-2), "M", BitConverter.GetBytes((ushort)300),
            "J", BitConverter.GetBytes(70000), 0x88, "N", "G", BitConverter.GetBytes(1.5).Reverse().ToArray(), ")", 0x8A, 6, new byte[] { 0, 0, 0, 0, 0, 1 }, "e",
            "X", BitConverter.GetBytes(1), "b", "}", "u", ".");
        var d = Assert.IsType<PyDict>(Unpickler.Load(pkl, "t"));
        var a = Assert.IsType<List<object?>>(d.Items[0].Value);
        Assert.Equal(new object?[] { 1L, -2L, 300L, 70000L, true, null, 1.5, Array.Empty<object?>(), 1L << 40 }, a);
        Assert.Equal("b", d.Items[1].Key);
    }

    [Fact]
    public void NegativeLong1IsSignExtended()
    {
        var v = Unpickler.Load(P(0x80, 2, 0x8A, 2, new byte[] { 0x00, 0xFF }, "."), "t");
        Assert.Equal(-256L, v);
    }

    public static TheoryData<byte[], string> Hostile() => new()
    {
        { P(0x80, 2, "cos\nsystem\n", "X", BitConverter.GetBytes(2), "ls", 0x85, "R", "."), "refusing to execute pickle global os.system" },
        { P(0x80, 2, "cbuiltins\neval\n", "."), "builtins.eval" },
        { P(0x80, 4, 0x8C, 10, "subprocess", 0x8C, 5, "Popen", 0x93, "."), "subprocess.Popen" },
        { P(0x80, 2, "ccollections\nOrderedDict\n", "K", 1, 0x85, "R", "."), "with arguments" },
        { P(0x80, 2, "ctorch\nTensor\n", ")", "R", "."), "refusing to call pickle global torch.Tensor" },
        { P(0x80, 2, "K", 1, ")", "R", "."), "not a callable" },
        { P(0x80, 2, "ctorch\nFloatStorage\n", ")", 0x81, "."), "NEWOBJ" },
        { P(0x80, 2, "S'x'\n."), "STRING" },
        { P(0x80, 2, "K", 1, "0", "."), "POP" },
        { P(0x80, 2, "h", 5, "."), "memo key 5" },
        { P(0x80, 2, "K", 1, "K", 2, "."), "2 objects" },
        { P(0x80, 2, "t", "."), "no MARK" },
        { P(0x80, 2, "s", "."), "underflow" },
        { P(0x80, 2, "X", BitConverter.GetBytes(1_000_000), "ab"), "remain" },
        { P(0x80, 2, "K", 1, "K", 2, "a", "."), "append to 1" },
        { P(0x80, 2, "K", 2, "K", 1, "b", "."), "BUILD on 2" },
        { P(0x80, 2, "K", 1, 0x85, "Q", "."), "persistent id" },
        { P(0x80, 2, "X", BitConverter.GetBytes(2), new byte[] { 0xC3, 0x28 }, "."), "UTF-8" },
        { P(0x80, 2, "cos"), "newline" },
        { P(0x80, 2, 0x8A, 9, new byte[9], "."), "64 bits" },
        { P(0x80, 2), "end of pickle" },
        { [], "end of pickle" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void RefusesWhatItDoesNotAllow(byte[] pkl, string expected)
    {
        var ex = Assert.Throws<InvalidDataException>(() => Unpickler.Load(pkl, "evil.pkl"));
        Assert.Contains("evil.pkl", ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void ASelfContainingDictIsRejectedWhenFlattened()
    {
        // d = {}; d['x'] = d  → must not recurse forever
        var pkl = P(0x80, 2, "}", "q", 0, "X", BitConverter.GetBytes(1), "x", "h", 0, "s", ".");
        var zip = PyTorchBinFileTests.Zip(("a/data.pkl", pkl));
        var ex = Assert.Throws<InvalidDataException>(() => PyTorchBinFile.FromBytes(zip, "cyc.bin"));
        Assert.Contains("contains itself", ex.Message);
    }

    [Fact]
    public void SharedDictsCannotBlowUpFlatteningExponentially()
    {
        // d0 = {}; for i in 1..30: d_i = {'a': d_{i-1}, 'b': d_{i-1}}  → 2^30 paths from a ~500-byte pickle.
        var p = new List<byte> { 0x80, 2 };
        void Emit(int i)
        {
            p.Add((byte)'}');
            if (i > 0)
            {
                p.AddRange([(byte)'(', (byte)'X', 1, 0, 0, 0, (byte)'a']);
                Emit(i - 1); // memoized as i-1, then referenced again under 'b'
                p.AddRange([(byte)'X', 1, 0, 0, 0, (byte)'b', (byte)'h', (byte)(i - 1), (byte)'u']);
            }
            p.AddRange([(byte)'q', (byte)i]);
        }
        Emit(30);
        p.Add((byte)'.');
        var zip = PyTorchBinFileTests.Zip(("a/data.pkl", p.ToArray()));
        var ex = Assert.Throws<InvalidDataException>(() => PyTorchBinFile.FromBytes(zip, "bomb.bin"));
        Assert.Contains("more than", ex.Message);
    }
}
