using System.Buffers.Binary;

namespace Vlm.Vision.Codecs;

/// <summary>Reads the orientation tag (0x0112) from IFD0 of an EXIF/TIFF block. Malformed EXIF is ignored
/// (orientation 1), as Pillow does not refuse images over it.</summary>
public static class Exif
{
    /// <summary><paramref name="block"/> is the TIFF structure, optionally preceded by "Exif\0\0".</summary>
    public static int ReadOrientation(ReadOnlySpan<byte> block)
    {
        if (block.Length >= 6 && block[..6].SequenceEqual("Exif\0\0"u8)) block = block[6..];
        if (block.Length < 8) return 1;
        bool le;
        if (block[0] == (byte)'I' && block[1] == (byte)'I') le = true;
        else if (block[0] == (byte)'M' && block[1] == (byte)'M') le = false;
        else return 1;
        if (U16(block, 2, le) != 42) return 1;
        uint ifd = U32(block, 4, le);
        if (ifd > (uint)block.Length - 2 || ifd < 8) return 1;
        int n = U16(block, (int)ifd, le);
        for (int i = 0; i < n; i++)
        {
            long e = ifd + 2L + 12L * i;
            if (e + 12 > block.Length) return 1;
            if (U16(block, (int)e, le) != 0x0112) continue;
            int type = U16(block, (int)e + 2, le);
            int v = type switch
            {
                3 => U16(block, (int)e + 8, le),      // SHORT, the normal case
                4 => (int)Math.Min(U32(block, (int)e + 8, le), 9u), // LONG, seen in some writers
                _ => 1,
            };
            return v is >= 1 and <= 8 ? v : 1;
        }
        return 1;
    }

    private static int U16(ReadOnlySpan<byte> b, int o, bool le) =>
        le ? BinaryPrimitives.ReadUInt16LittleEndian(b[o..]) : BinaryPrimitives.ReadUInt16BigEndian(b[o..]);

    private static uint U32(ReadOnlySpan<byte> b, int o, bool le) =>
        le ? BinaryPrimitives.ReadUInt32LittleEndian(b[o..]) : BinaryPrimitives.ReadUInt32BigEndian(b[o..]);
}
