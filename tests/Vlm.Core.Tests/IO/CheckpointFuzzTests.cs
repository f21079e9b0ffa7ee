using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Core.Tests.IO;

/// <summary>
/// Randomly mutated checkpoints (bit flips, truncations, header-length and JSON edits, pickle opcode edits):
/// every outcome must be a successful load of every tensor or an InvalidDataException — never another exception
/// type, a crash or a hang. Seeds are fixed so a failure names a reproducible case.
/// </summary>
public sealed class CheckpointFuzzTests
{
    private static void Outcome(Func<IWeightSource> open, string what)
    {
        try
        {
            using var w = open();
            foreach (var n in w.Names)
            {
                var info = w.Info(n);
                var t = w.Load(n);
                Assert.Equal(info.Shape, t.ShapeArray());
            }
        }
        catch (InvalidDataException) { }
        catch (Exception e)
        {
            Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        }
    }

    private static byte[] SafeTensorsBase()
    {
        var t = new Dictionary<string, Tensor>
        {
            ["a.weight"] = Tensor.FromArray(Enumerable.Range(0, 24).Select(i => i * 0.5f).ToArray(), 2, 3, 4),
            ["ids"] = Tensor.FromArray(new long[] { 1, 2, 3 }, 3),
            ["m"] = Tensor.FromArray(new[] { true, false, true, true }, 2, 2),
            ["n"] = Tensor.FromArray(new[] { 5, 6 }, 2),
        };
        return SafeTensors.ToBytes(t);
    }

    private static readonly string[] JsonSnippets = ["\"", "{", "}", "[", "]", ",", ":", "-", "0", "9", "99999999999999999999", "1e3", "null",
        "\"F16\"", "\"BF16\"", "\"U64\"", "\"I8\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\\u0000", "\\ud800", "é", "\u0001"];

    private static byte[] MutateSafeTensors(byte[] src, Random r)
    {
        var b = (byte[])src.Clone();
        int headerLen = (int)BinaryPrimitives.ReadUInt64LittleEndian(b);
        switch (r.Next(6))
        {
            case 0: // bit flips anywhere
                for (int k = r.Next(1, 6); k > 0; k--) b[r.Next(b.Length)] ^= (byte)(1 << r.Next(8));
                return b;
            case 1: // truncation
                return b[..r.Next(b.Length)];
            case 2: // header length edits
                ulong v = r.Next(4) switch
                {
                    0 => (ulong)(headerLen + r.Next(-16, 17)),
                    1 => (ulong)r.NextInt64(),
                    2 => ulong.MaxValue - (ulong)r.Next(16),
                    _ => (ulong)r.Next(b.Length + 16),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(b, v);
                return b;
            default: // JSON edits: replace, insert or delete inside the header, keeping the length field honest
                {
                    var header = Encoding.UTF8.GetString(b, 8, headerLen);
                    for (int k = r.Next(1, 4); k > 0; k--)
                    {
                        int at = r.Next(header.Length);
                        string s = JsonSnippets[r.Next(JsonSnippets.Length)];
                        header = r.Next(3) switch
                        {
                            0 => header[..at] + s + header[Math.Min(header.Length, at + s.Length)..],
                            1 => header.Insert(at, s),
                            _ => header.Remove(at, Math.Min(r.Next(1, 6), header.Length - at)),
                        };
                    }
                    var h = Encoding.UTF8.GetBytes(header);
                    var outb = new byte[8 + h.Length + (b.Length - 8 - headerLen)];
                    BinaryPrimitives.WriteUInt64LittleEndian(outb, (ulong)h.Length);
                    h.CopyTo(outb, 8);
                    b.AsSpan(8 + headerLen).CopyTo(outb.AsSpan(8 + h.Length));
                    return outb;
                }
        }
    }

    [Fact]
    public void MutatedSafeTensorsLoadOrFailWithInvalidData()
    {
        var src = SafeTensorsBase();
        int ok = 0;
        for (int i = 0; i < 3000; i++)
        {
            var r = new Random(1000 + i);
            var m = MutateSafeTensors(src, r);
            Outcome(() => SafeTensorsFile.FromBytes(m, $"fuzz-{i}"), $"safetensors seed {1000 + i}");
            try { using var f = SafeTensorsFile.FromBytes(m); ok++; } catch (InvalidDataException) { }
        }
        // The mutations must exercise both outcomes, or the test proves little.
        Assert.InRange(ok, 50, 2950);
    }

    private static readonly byte[] Opcodes = [0x80, 0x95, 0x2E, 0x7D, 0x5D, 0x29, 0x28, 0x58, 0x8C, 0x4A, 0x4B, 0x4D, 0x8A, 0x47, 0x4E, 0x88, 0x89,
        0x74, 0x85, 0x86, 0x87, 0x6C, 0x64, 0x61, 0x65, 0x73, 0x75, 0x71, 0x72, 0x94, 0x68, 0x6A, 0x63, 0x93, 0x52, 0x51, 0x62, 0x81, 0x30];

    private static byte[] MutatePickle(byte[] src, Random r)
    {
        var b = new List<byte>(src);
        for (int k = r.Next(1, 4); k > 0; k--)
        {
            if (b.Count == 0) break;
            int at = r.Next(b.Count);
            switch (r.Next(5))
            {
                case 0: b[at] ^= (byte)(1 << r.Next(8)); break;
                case 1: b[at] = Opcodes[r.Next(Opcodes.Length)]; break;
                case 2: b.Insert(at, Opcodes[r.Next(Opcodes.Length)]); break;
                case 3: b.RemoveRange(at, Math.Min(r.Next(1, 8), b.Count - at)); break;
                default: b[at] = (byte)r.Next(256); break;
            }
        }
        return b.ToArray();
    }

    [Fact]
    public void MutatedPyTorchZipsLoadOrFailWithInvalidData()
    {
        var zipBytes = File.ReadAllBytes(PyTorchBinFileTests.Data("pt_basic.bin"));
        List<(string Name, byte[] Data)> entries;
        using (var z = new ZipArchive(new MemoryStream(zipBytes), ZipArchiveMode.Read))
            entries = z.Entries.Select(e => { var ms = new MemoryStream(); using (var s = e.Open()) s.CopyTo(ms); return (e.FullName, ms.ToArray()); }).ToList();
        int pklIndex = entries.FindIndex(e => e.Name.EndsWith("/data.pkl", StringComparison.Ordinal));
        int ok = 0;
        for (int i = 0; i < 1500; i++)
        {
            var r = new Random(5000 + i);
            var mutated = entries.ToArray();
            mutated[pklIndex] = (mutated[pklIndex].Name, MutatePickle(entries[pklIndex].Data, r));
            if (r.Next(4) == 0) // also corrupt a storage's length now and then
            {
                int j = r.Next(entries.Count);
                if (j != pklIndex) mutated[j] = (mutated[j].Name, mutated[j].Data[..r.Next(mutated[j].Data.Length + 1)]);
            }
            var zip = PyTorchBinFileTests.Zip(mutated);
            Outcome(() => PyTorchBinFile.FromBytes(zip, $"fuzz-{i}"), $"pickle seed {5000 + i}");
            try { using var f = PyTorchBinFile.FromBytes(zip); ok++; } catch (InvalidDataException) { }
        }
        Assert.InRange(ok, 10, 1490);
        for (int i = 0; i < 600; i++)
        {
            var r = new Random(9000 + i);
            var b = (byte[])zipBytes.Clone();
            if (r.Next(3) == 0) b = b[..r.Next(b.Length)];
            else for (int k = r.Next(1, 6); k > 0; k--) b[r.Next(b.Length)] ^= (byte)(1 << r.Next(8));
            Outcome(() => PyTorchBinFile.FromBytes(b, $"zipfuzz-{i}"), $"zip seed {9000 + i}");
        }
    }
}
