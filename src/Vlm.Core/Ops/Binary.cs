using System.Numerics.Tensors;
using Vlm.Core.Autograd;
using Vlm.Core.Ops;

namespace Vlm.Core;

/// <summary>Element-wise float binary op with span fast paths (TensorPrimitives) and a scalar fallback.</summary>
internal interface IBinaryOp
{
    static abstract float Apply(float a, float b);
    static abstract void Spans(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> d);
    static abstract void SpanScalar(ReadOnlySpan<float> a, float b, Span<float> d);
    static abstract void ScalarSpan(float a, ReadOnlySpan<float> b, Span<float> d);
}

internal struct AddOp : IBinaryOp
{
    public static float Apply(float a, float b) => a + b;
    public static void Spans(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Add(a, b, d);
    public static void SpanScalar(ReadOnlySpan<float> a, float b, Span<float> d) => TensorPrimitives.Add(a, b, d);
    public static void ScalarSpan(float a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Add(b, a, d);
}

internal struct SubOp : IBinaryOp
{
    public static float Apply(float a, float b) => a - b;
    public static void Spans(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Subtract(a, b, d);
    public static void SpanScalar(ReadOnlySpan<float> a, float b, Span<float> d) => TensorPrimitives.Subtract(a, b, d);
    public static void ScalarSpan(float a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Subtract(a, b, d);
}

internal struct MulOp : IBinaryOp
{
    public static float Apply(float a, float b) => a * b;
    public static void Spans(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Multiply(a, b, d);
    public static void SpanScalar(ReadOnlySpan<float> a, float b, Span<float> d) => TensorPrimitives.Multiply(a, b, d);
    public static void ScalarSpan(float a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Multiply(b, a, d);
}

internal struct DivOp : IBinaryOp
{
    public static float Apply(float a, float b) => a / b;
    public static void Spans(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Divide(a, b, d);
    public static void SpanScalar(ReadOnlySpan<float> a, float b, Span<float> d) => TensorPrimitives.Divide(a, b, d);
    public static void ScalarSpan(float a, ReadOnlySpan<float> b, Span<float> d) => TensorPrimitives.Divide(a, b, d);
}

public sealed partial class Tensor
{
    /// <summary>Broadcast element-wise kernel: out = TOp(a, b) over the broadcast shape.</summary>
    internal static Tensor BinaryKernel<TOp>(Tensor a, Tensor b) where TOp : struct, IBinaryOp
    {
        a.RequireFloat(); b.RequireFloat();
        var shape = ShapeUtil.Broadcast(a.Shape, b.Shape);
        var r = NewResult(shape);
        var rs = r.Span;
        if (a.IsContiguous && b.IsContiguous && ShapeUtil.SameShape(a.Shape, b.Shape))
        {
            ParallelSpans(rs.Length, (s, e) => TOp.Spans(a.Data.AsSpan(a.Offset + s, e - s), b.Data.AsSpan(b.Offset + s, e - s), r.Data.AsSpan(s, e - s)));
            return r;
        }
        var ad = a.Data; var bd = b.Data; var od = r.Data;
        StridedLoop.Run(shape, ShapeUtil.ContiguousStrides(shape), 0,
            ShapeUtil.BroadcastStrides(a.Shape, a.Strides, shape), a.Offset,
            ShapeUtil.BroadcastStrides(b.Shape, b.Strides, shape), b.Offset,
            (o, ia, ib, n, so, sa, sb) =>
            {
                var dst = od.AsSpan(o, n);
                if (sa == 1 && sb == 1) TOp.Spans(ad.AsSpan(ia, n), bd.AsSpan(ib, n), dst);
                else if (sa == 1 && sb == 0) TOp.SpanScalar(ad.AsSpan(ia, n), bd[ib], dst);
                else if (sa == 0 && sb == 1) TOp.ScalarSpan(ad[ia], bd.AsSpan(ib, n), dst);
                else for (int i = 0; i < n; i++) dst[i] = TOp.Apply(ad[ia + i * sa], bd[ib + i * sb]);
            });
        return r;
    }

    /// <summary>Splits [0, n) into per-core chunks when n is large enough to pay for the fork.</summary>
    internal static void ParallelSpans(int n, Action<int, int> body, int threshold = 1 << 16)
    {
        int workers = n >= threshold ? Environment.ProcessorCount : 1;
        if (workers <= 1) { body(0, n); return; }
        Parallel.For(0, workers, w =>
        {
            int s = (int)((long)n * w / workers) & ~7, e = w == workers - 1 ? n : (int)((long)n * (w + 1) / workers) & ~7;
            if (e > s) body(s, e);
        });
    }

    internal void RequireFloat()
    {
        if (DType != DType.Float32) throw new InvalidOperationException($"op needs a float32 tensor, got {DType} tensor {Name ?? ShapeString}");
    }

    public Tensor Add(Tensor other)
    {
        var r = BinaryKernel<AddOp>(this, other);
        Tensor a = this, b = other;
        return Recorder.Record(r, "add", [a, b], g => [a.RequiresGrad ? g.SumTo(a.Shape) : null, b.RequiresGrad ? g.SumTo(b.Shape) : null]);
    }

    public Tensor Sub(Tensor other)
    {
        var r = BinaryKernel<SubOp>(this, other);
        Tensor a = this, b = other;
        return Recorder.Record(r, "sub", [a, b], g => [a.RequiresGrad ? g.SumTo(a.Shape) : null, b.RequiresGrad ? g.Neg().SumToFree(b.Shape) : null]);
    }

    public Tensor Mul(Tensor other)
    {
        var r = BinaryKernel<MulOp>(this, other);
        Tensor a = this, b = other;
        return Recorder.Record(r, "mul", [a, b], g => [
            a.RequiresGrad ? BinaryKernel<MulOp>(g, b).SumToFree(a.Shape) : null,
            b.RequiresGrad ? BinaryKernel<MulOp>(g, a).SumToFree(b.Shape) : null]);
    }

    public Tensor Div(Tensor other)
    {
        var r = BinaryKernel<DivOp>(this, other);
        Tensor a = this, b = other;
        return Recorder.Record(r, "div", [a, b], g => [
            a.RequiresGrad ? BinaryKernel<DivOp>(g, b).SumToFree(a.Shape) : null,
            b.RequiresGrad ? DivGradDenominator(g, a, b) : null]);
    }

    /// <summary>d(a/b)/db · g = −g·(a/b)/b, each temporary returned to the pool once used.</summary>
    private static Tensor DivGradDenominator(Tensor g, Tensor a, Tensor b)
    {
        var q = BinaryKernel<DivOp>(a, b);
        var q2 = BinaryKernel<DivOp>(q, b);
        q.Dispose();
        var p = BinaryKernel<MulOp>(g, q2);
        q2.Dispose();
        var n = p.Neg();
        p.Dispose();
        return n.SumToFree(b.Shape);
    }

    public Tensor Add(float s) => Affine(1f, s);
    public Tensor Sub(float s) => Affine(1f, -s);
    public Tensor Mul(float s) => Affine(s, 0f);
    /// <summary>True division (not multiplication by 1/s) so results match PyTorch bit for bit.</summary>
    public Tensor Div(float s)
    {
        var r = BinaryKernel<DivOp>(this, Scalar(s));
        return Recorder.Record(r, "div_scalar", [this], g => [BinaryKernel<DivOp>(g, Scalar(s))]);
    }

    /// <summary>scale · x + shift in one pass.</summary>
    public Tensor Affine(float scale, float shift)
    {
        RequireFloat();
        var src = ContiguousNoGrad();
        var r = NewResult(ShapeArray());
        var sd = src.Data; int so = src.Offset; var rd = r.Data;
        ParallelSpans(Numel, (s, e) =>
        {
            var d = rd.AsSpan(s, e - s);
            if (shift == 0f) TensorPrimitives.Multiply(sd.AsSpan(so + s, e - s), scale, d);
            else
            {
                TensorPrimitives.Multiply(sd.AsSpan(so + s, e - s), scale, d);
                TensorPrimitives.Add(d, shift, d);
            }
        });
        DropCopy(src, this);
        return Recorder.Record(r, "affine", [this], g => [g.Mul(scale)]);
    }

    public Tensor Neg() => Affine(-1f, 0f);

    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    public static Tensor operator +(Tensor a, float s) => a.Add(s);
    public static Tensor operator +(float s, Tensor a) => a.Add(s);
    public static Tensor operator -(Tensor a, float s) => a.Sub(s);
    public static Tensor operator -(float s, Tensor a) => a.Affine(-1f, s);
    public static Tensor operator *(Tensor a, float s) => a.Mul(s);
    public static Tensor operator *(float s, Tensor a) => a.Mul(s);
    public static Tensor operator /(Tensor a, float s) => a.Div(s);
    public static Tensor operator -(Tensor a) => a.Neg();

    /// <summary>this += other (broadcast), outside autograd: gradient accumulation and optimizer updates.</summary>
    public void AddInPlace(Tensor other, float alpha = 1f)
    {
        RequireFloat(); other.RequireFloat();
        if (GradMode.IsEnabled && (RequiresGrad || other.RequiresGrad) && GradFn != null)
            throw new InvalidOperationException("in-place update of a tensor recorded in the graph");
        Storage.Touch();
        var shape = ShapeArray();
        ShapeUtil.BroadcastStrides(other.Shape, other.Strides, shape); // validates
        if (IsContiguous && other.IsContiguous && ShapeUtil.SameShape(Shape, other.Shape))
        {
            var d = Data; var od = other.Data; int off = Offset, oo = other.Offset;
            ParallelSpans(Numel, (s, e) =>
            {
                var dst = d.AsSpan(off + s, e - s);
                if (alpha == 1f) TensorPrimitives.Add(dst, od.AsSpan(oo + s, e - s), dst);
                else TensorPrimitives.MultiplyAdd(od.AsSpan(oo + s, e - s), alpha, dst, dst);
            });
            return;
        }
        var dd = Data; var sd = other.Data;
        StridedLoop.Run(shape, ShapeArrayStrides(), Offset,
            ShapeUtil.BroadcastStrides(other.Shape, other.Strides, shape), other.Offset,
            new int[shape.Length], 0,
            (o, ia, _, n, so, sa, _) =>
            {
                if (so == 1 && sa == 1)
                {
                    // Rows of a slice (narrow's backward into a fused projection's gradient): vectorised.
                    var dst = dd.AsSpan(o, n);
                    if (alpha == 1f) TensorPrimitives.Add(dst, sd.AsSpan(ia, n), dst);
                    else TensorPrimitives.MultiplyAdd(sd.AsSpan(ia, n), alpha, dst, dst);
                }
                else for (int i = 0; i < n; i++) dd[o + i * so] += alpha * sd[ia + i * sa];
            });
    }

    internal int[] ShapeArrayStrides() => Strides.ToArray();
}
