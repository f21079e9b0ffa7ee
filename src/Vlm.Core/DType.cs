namespace Vlm.Core;

/// <summary>Element types. Compute is float32; ids are int64/int32; masks are bool/uint8.
/// float16/bfloat16 exist only on disk and are converted to float32 when loaded.</summary>
public enum DType
{
    Float32,
    Int64,
    Int32,
    UInt8,
    Bool,
}

public static class DTypeExtensions
{
    public static int ElementSize(this DType t) => t switch
    {
        DType.Float32 => 4,
        DType.Int64 => 8,
        DType.Int32 => 4,
        DType.UInt8 or DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsFloating(this DType t) => t == DType.Float32;
}
