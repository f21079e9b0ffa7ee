using Vlm.Core.Ops;

namespace Vlm.Core;

internal interface ICompareOp
{
    static abstract bool F(float a, float b);
    static abstract bool D(double a, double b);
}

internal struct EqOp : ICompareOp { public static bool F(float a, float b) => a == b; public static bool D(double a, double b) => a == b; }
internal struct NeOp : ICompareOp { public static bool F(float a, float b) => a != b; public static bool D(double a, double b) => a != b; }
internal struct GtOp : ICompareOp { public static bool F(float a, float b) => a > b; public static bool D(double a, double b) => a > b; }
internal struct GeOp : ICompareOp { public static bool F(float a, float b) => a >= b; public static bool D(double a, double b) => a >= b; }
internal struct LtOp : ICompareOp { public static bool F(float a, float b) => a < b; public static bool D(double a, double b) => a < b; }
internal struct LeOp : ICompareOp { public static bool F(float a, float b) => a <= b; public static bool D(double a, double b) => a <= b; }
internal struct AndOp : ICompareOp { public static bool F(float a, float b) => a != 0 && b != 0; public static bool D(double a, double b) => a != 0 && b != 0; }
internal struct OrOp : ICompareOp { public static bool F(float a, float b) => a != 0 || b != 0; public static bool D(double a, double b) => a != 0 || b != 0; }
internal struct XorOp : ICompareOp { public static bool F(float a, float b) => (a != 0) != (b != 0); public static bool D(double a, double b) => (a != 0) != (b != 0); }

/// <summary>Comparisons and logical ops: broadcast, any element types (compared as values, NaN unequal to
/// everything like IEEE/torch), result Bool. Not differentiable (never recorded).</summary>
public sealed partial class Tensor
{
    /// <summary>Element at storage offset <paramref name="o"/> as a double (exact for int32, and for int64 below 2^53).</summary>
    internal static double ReadD(Storage s, int o) => s.DType switch
    {
        DType.Float32 => s.F32![o],
        DType.Int64 => s.I64![o],
        DType.Int32 => s.I32![o],
        _ => s.U8![o],
    };

    internal static Tensor CompareKernel<TOp>(Tensor a, Tensor b) where TOp : struct, ICompareOp
    {
        var shape = ShapeUtil.Broadcast(a.Shape, b.Shape);
        var r = NewResult(shape, DType.Bool);
        var od = r.Storage.U8!;
        var sa = ShapeUtil.BroadcastStrides(a.Shape, a.Strides, shape);
        var sb = ShapeUtil.BroadcastStrides(b.Shape, b.Strides, shape);
        var cs = ShapeUtil.ContiguousStrides(shape);
        if (a.DType == DType.Float32 && b.DType == DType.Float32)
        {
            var ad = a.Data; var bd = b.Data;
            StridedLoop.Run(shape, cs, 0, sa, a.Offset, sb, b.Offset, (o, ia, ib, n, so, s1, s2) =>
            {
                for (int i = 0; i < n; i++) od[o + i * so] = TOp.F(ad[ia + i * s1], bd[ib + i * s2]) ? (byte)1 : (byte)0;
            });
        }
        else if (a.DType == DType.Int64 && b.DType == DType.Int64)
        {
            var ad = a.Storage.I64!; var bd = b.Storage.I64!;
            StridedLoop.Run(shape, cs, 0, sa, a.Offset, sb, b.Offset, (o, ia, ib, n, so, s1, s2) =>
            {
                // Compare int64 ids exactly (no double rounding above 2^53).
                for (int i = 0; i < n; i++)
                {
                    long x = ad[ia + i * s1], y = bd[ib + i * s2];
                    od[o + i * so] = TOp.D(x.CompareTo(y), 0) ? (byte)1 : (byte)0;
                }
            });
        }
        else
        {
            var ast = a.Storage; var bst = b.Storage;
            StridedLoop.Run(shape, cs, 0, sa, a.Offset, sb, b.Offset, (o, ia, ib, n, so, s1, s2) =>
            {
                for (int i = 0; i < n; i++) od[o + i * so] = TOp.D(ReadD(ast, ia + i * s1), ReadD(bst, ib + i * s2)) ? (byte)1 : (byte)0;
            });
        }
        return r;
    }

    // The int64 path above compares sign(x − y) with 0, which is only right for ordering ops and ==/!=;
    // logical ops on int64 go through the generic path instead.
    private static Tensor Logical<TOp>(Tensor a, Tensor b) where TOp : struct, ICompareOp =>
        a.DType == DType.Int64 && b.DType == DType.Int64 ? CompareKernel<TOp>(a.To(DType.Float32), b.To(DType.Float32)) : CompareKernel<TOp>(a, b);

    private Tensor ScalarLike(float s) => DType == DType.Int64 && s == MathF.Round(s) && Math.Abs(s) < 9e15f
        ? FromArray(new[] { (long)s }, Array.Empty<int>())
        : Scalar(s);

    public Tensor Eq(Tensor other) => CompareKernel<EqOp>(this, other);
    public Tensor Ne(Tensor other) => CompareKernel<NeOp>(this, other);
    public Tensor Gt(Tensor other) => CompareKernel<GtOp>(this, other);
    public Tensor Ge(Tensor other) => CompareKernel<GeOp>(this, other);
    public Tensor Lt(Tensor other) => CompareKernel<LtOp>(this, other);
    public Tensor Le(Tensor other) => CompareKernel<LeOp>(this, other);

    public Tensor Eq(float s) => CompareKernel<EqOp>(this, ScalarLike(s));
    public Tensor Ne(float s) => CompareKernel<NeOp>(this, ScalarLike(s));
    public Tensor Gt(float s) => CompareKernel<GtOp>(this, ScalarLike(s));
    public Tensor Ge(float s) => CompareKernel<GeOp>(this, ScalarLike(s));
    public Tensor Lt(float s) => CompareKernel<LtOp>(this, ScalarLike(s));
    public Tensor Le(float s) => CompareKernel<LeOp>(this, ScalarLike(s));

    /// <summary>Non-zero → true. Any element type in, Bool out (broadcast).</summary>
    public Tensor LogicalAnd(Tensor other) => Logical<AndOp>(this, other);
    public Tensor LogicalOr(Tensor other) => Logical<OrOp>(this, other);
    public Tensor LogicalXor(Tensor other) => Logical<XorOp>(this, other);
    public Tensor LogicalNot() => CompareKernel<EqOp>(DType == DType.Int64 ? To(DType.Float32) : this, Scalar(0f));

    /// <summary>True when any element is non-zero (NaN counts as non-zero).</summary>
    public bool Any()
    {
        var c = Ne(0f);
        foreach (var v in c.SpanU8) if (v != 0) return true;
        return false;
    }

    /// <summary>True when every element is non-zero.</summary>
    public bool All()
    {
        var c = Ne(0f);
        foreach (var v in c.SpanU8) if (v == 0) return false;
        return true;
    }

    /// <summary>Number of non-zero elements.</summary>
    public int CountNonZero()
    {
        var c = Ne(0f);
        int k = 0;
        foreach (var v in c.SpanU8) k += v;
        return k;
    }
}
