using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Vlm.Core.IO;

/// <summary>
/// On-disk element types (safetensors names) and their decoding into the engine's dtypes.
/// Floating types load as float32; I64/I32/U8/BOOL load as stored; the other integer types widen to the
/// smallest engine type that holds every value (I8/I16/U16 → int32, U32 → int64; U64 → int64 with a range check).
/// Little-endian hosts only (the formats are little-endian and we reinterpret bytes in place).
/// </summary>
public static class DTypeCodec
{
    /// <summary>Bytes per element of an on-disk dtype, or null if the name is not one we know.</summary>
    public static int? ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "U8" or "I8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => null,
    };

    /// <summary>The engine dtype a stored dtype loads as.</summary>
    public static DType LoadedAs(string dtype) => dtype switch
    {
        "F64" or "F32" or "F16" or "BF16" or "F8_E4M3" or "F8_E5M2" => DType.Float32,
        "I64" or "U32" or "U64" => DType.Int64,
        "I32" or "I16" or "U16" or "I8" => DType.Int32,
        "U8" => DType.UInt8,
        "BOOL" => DType.Bool,
        _ => throw new ArgumentException($"unknown dtype '{dtype}'", nameof(dtype)),
    };

    /// <summary>The safetensors name under which an engine dtype is written.</summary>
    public static string StoredName(DType t) => t switch
    {
        DType.Float32 => "F32", DType.Int64 => "I64", DType.Int32 => "I32", DType.UInt8 => "U8", DType.Bool => "BOOL",
        _ => throw new ArgumentException($"cannot store {t}"),
    };

    /// <summary>A destination of <paramref name="numel"/> elements of the type <paramref name="dtype"/> loads as.</summary>
    internal static Array Allocate(string dtype, int numel) => LoadedAs(dtype) switch
    {
        DType.Float32 => new float[numel],
        DType.Int64 => new long[numel],
        DType.Int32 => new int[numel],
        _ => new byte[numel],
    };

    internal static Tensor Wrap(string dtype, Array data, int[] shape) => data switch
    {
        float[] f => Tensor.FromOwnedArray(f, shape),
        long[] l => Tensor.FromArray(l, shape),
        int[] i => Tensor.FromArray(i, shape),
        byte[] b => Tensor.FromBytes(b, LoadedAs(dtype), shape),
        _ => throw new InvalidOperationException("unreachable"),
    };

    /// <summary>
    /// Decodes <paramref name="src"/> (whole elements of <paramref name="dtype"/>) into <paramref name="dst"/>
    /// starting at element <paramref name="dstIndex"/>. Returns an error text for a value the target cannot hold.
    /// </summary>
    internal static string? Decode(string dtype, ReadOnlySpan<byte> src, Array dst, int dstIndex)
    {
        switch (dtype)
        {
            case "F32": MemoryMarshal.Cast<byte, float>(src).CopyTo(((float[])dst).AsSpan(dstIndex)); break;
            case "F16": TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src), ((float[])dst).AsSpan(dstIndex)); break;
            case "BF16":
                {
                    var s = MemoryMarshal.Cast<byte, ushort>(src);
                    var d = ((float[])dst).AsSpan(dstIndex, s.Length);
                    // bf16 is the top half of a float32, so widening is exact.
                    for (int i = 0; i < s.Length; i++) d[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
                    break;
                }
            case "F64":
                {
                    var s = MemoryMarshal.Cast<byte, double>(src);
                    var d = ((float[])dst).AsSpan(dstIndex, s.Length);
                    for (int i = 0; i < s.Length; i++) d[i] = (float)s[i];
                    break;
                }
            case "F8_E5M2":
                {
                    // e5m2 is the top byte of an IEEE half.
                    var d = ((float[])dst).AsSpan(dstIndex, src.Length);
                    for (int i = 0; i < src.Length; i++) d[i] = (float)BitConverter.UInt16BitsToHalf((ushort)(src[i] << 8));
                    break;
                }
            case "F8_E4M3":
                {
                    var d = ((float[])dst).AsSpan(dstIndex, src.Length);
                    for (int i = 0; i < src.Length; i++) d[i] = E4M3FnToSingle(src[i]);
                    break;
                }
            case "I64": MemoryMarshal.Cast<byte, long>(src).CopyTo(((long[])dst).AsSpan(dstIndex)); break;
            case "U32":
                {
                    var s = MemoryMarshal.Cast<byte, uint>(src);
                    var d = ((long[])dst).AsSpan(dstIndex, s.Length);
                    for (int i = 0; i < s.Length; i++) d[i] = s[i];
                    break;
                }
            case "U64":
                {
                    var s = MemoryMarshal.Cast<byte, ulong>(src);
                    var d = ((long[])dst).AsSpan(dstIndex, s.Length);
                    for (int i = 0; i < s.Length; i++)
                    {
                        if (s[i] > long.MaxValue) return $"U64 value {s[i]} does not fit in int64";
                        d[i] = (long)s[i];
                    }
                    break;
                }
            case "I32": MemoryMarshal.Cast<byte, int>(src).CopyTo(((int[])dst).AsSpan(dstIndex)); break;
            case "I16":
                {
                    var s = MemoryMarshal.Cast<byte, short>(src);
                    var d = ((int[])dst).AsSpan(dstIndex, s.Length);
                    for (int i = 0; i < s.Length; i++) d[i] = s[i];
                    break;
                }
            case "U16":
                {
                    var s = MemoryMarshal.Cast<byte, ushort>(src);
                    var d = ((int[])dst).AsSpan(dstIndex, s.Length);
                    for (int i = 0; i < s.Length; i++) d[i] = s[i];
                    break;
                }
            case "I8":
                {
                    var d = ((int[])dst).AsSpan(dstIndex, src.Length);
                    for (int i = 0; i < src.Length; i++) d[i] = (sbyte)src[i];
                    break;
                }
            case "U8" or "BOOL": src.CopyTo(((byte[])dst).AsSpan(dstIndex)); break;
            default: return $"dtype {dtype} cannot be decoded";
        }
        return null;
    }

    /// <summary>float8 e4m3fn (OCP FP8): bias 7, no infinities, S.1111.111 is NaN.</summary>
    internal static float E4M3FnToSingle(byte b)
    {
        int sign = b >> 7, exp = (b >> 3) & 0xF, man = b & 7;
        float v;
        if (exp == 0xF && man == 7) v = float.NaN;
        else if (exp == 0) v = man / 8f * MathF.Pow(2, -6);
        else v = (1 + man / 8f) * MathF.Pow(2, exp - 7);
        return sign == 1 ? -v : v;
    }

    static DTypeCodec()
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Vlm checkpoint IO needs a little-endian host");
    }

    internal static ulong ReadU64(ReadOnlySpan<byte> s) => BinaryPrimitives.ReadUInt64LittleEndian(s);
}
