using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>torch.matmul semantics for rank ≥ 2 operands (1-D operands are promoted and the dim removed),
/// batch dims broadcast. Transposed views go to GEMM as transpose flags, never copied.</summary>
public sealed partial class Tensor
{
    public Tensor MatMul(Tensor other)
    {
        RequireFloat(); other.RequireFloat();
        if (Rank == 0 || other.Rank == 0) throw new ArgumentException("matmul needs tensors of rank ≥ 1");
        if (Rank == 1) return Unsqueeze(0).MatMul(other).Squeeze(-2);
        if (other.Rank == 1) return MatMul(other.Unsqueeze(-1)).Squeeze(-1);

        int m = _shape[^2], k = _shape[^1], k2 = other._shape[^2], n = other._shape[^1];
        if (k != k2) throw new ArgumentException($"matmul shape mismatch: {ShapeString} @ {other.ShapeString}");
        var batch = ShapeUtil.Broadcast(_shape.AsSpan(0, Rank - 2), other._shape.AsSpan(0, other.Rank - 2));
        var outShape = batch.Append(m).Append(n).ToArray();
        var r = NewResult(outShape);
        MatMulKernel(this, other, r, batch, m, n, k);
        Tensor a = this, b = other;
        return Recorder.Record(r, "matmul", [a, b], g => [
            a.RequiresGrad ? MatMulGradPart(g, b, left: true, a.Shape) : null,
            b.RequiresGrad ? MatMulGradPart(g, a, left: false, b.Shape) : null]);
    }

    /// <summary>g·bᵀ summed to a's shape (<paramref name="left"/>), or aᵀ·g summed to b's; the transposed view (which
    /// holds the saved operand's buffer) and a batch-broadcast product go back to the pool once used.</summary>
    private static Tensor MatMulGradPart(Tensor g, Tensor other, bool left, ReadOnlySpan<int> shape)
    {
        using var t = other.T;
        return (left ? g.MatMul(t) : t.MatMul(g)).SumToFree(shape);
    }

    /// <summary>How a 2-D slice of a tensor is laid out for GEMM: (transposed?, leading dimension),
    /// or null when it is neither row- nor column-major (needs a copy).</summary>
    private static (bool trans, int ld)? MatrixLayout(Tensor t)
    {
        int rs = t._strides[^2], cs = t._strides[^1], rows = t._shape[^2], cols = t._shape[^1];
        if (cs == 1 && (rs >= cols || rows == 1)) return (false, Math.Max(rs, Math.Max(cols, 1)));
        if (rs == 1 && (cs >= rows || cols == 1)) return (true, Math.Max(cs, Math.Max(rows, 1)));
        return null;
    }

    private static void MatMulKernel(Tensor a, Tensor b, Tensor r, int[] batch, int m, int n, int k)
    {
        var ac = MatrixLayout(a) is null ? a.ContiguousNoGrad() : a;
        var bc = MatrixLayout(b) is null ? b.ContiguousNoGrad() : b;
        try { MatMulKernelLaidOut(ac, bc, r, batch, m, n, k); }
        finally
        {
            // Private copies (strided views GEMM cannot read) go back to the pool; the backward reads the inputs.
            DropCopy(ac, a); DropCopy(bc, b);
        }
    }

    private static void MatMulKernelLaidOut(Tensor a, Tensor b, Tensor r, int[] batch, int m, int n, int k)
    {
        var (ta, lda) = MatrixLayout(a)!.Value;
        var (tb, ldb) = MatrixLayout(b)!.Value;
        int batchCount = ShapeUtil.Numel(batch);
        var aBs = ShapeUtil.BroadcastStrides(a._shape.AsSpan(0, a.Rank - 2), a._strides.AsSpan(0, a.Rank - 2), batch);
        var bBs = ShapeUtil.BroadcastStrides(b._shape.AsSpan(0, b.Rank - 2), b._strides.AsSpan(0, b.Rank - 2), batch);

        // Fold a batch of row-major A against one shared B into a single tall GEMM (Linear layers).
        if (!ta && bBs.All(s => s == 0) && a.IsContiguous && batchCount > 1)
        {
            Gemm.Sgemm(false, tb, batchCount * m, n, k, 1f, a.Data.AsSpan(a.Offset), lda, b.Data.AsSpan(b.Offset), ldb, 0f, r.Data, n);
            return;
        }
        var ad = a.Data; var bd = b.Data; var rd = r.Data;
        int aOff0 = a.Offset, bOff0 = b.Offset;
        void One(int i, bool parallel)
        {
            int ao = aOff0, bo = bOff0, rem = i;
            for (int d = batch.Length - 1; d >= 0; d--)
            {
                int idx = rem % batch[d]; rem /= batch[d];
                ao += idx * aBs[d]; bo += idx * bBs[d];
            }
            Gemm.Sgemm(ta, tb, m, n, k, 1f, ad.AsSpan(ao), lda, bd.AsSpan(bo), ldb, 0f, rd.AsSpan(i * m * n, m * n), n, parallel);
        }
        // Many small products (attention heads): one single-threaded GEMM per item, items in parallel.
        long flops = 2L * m * n * k;
        if (batchCount > 1 && flops < (1L << 24))
            Parallel.For(0, batchCount, i => One(i, false));
        else
            for (int i = 0; i < batchCount; i++) One(i, true);
    }
}
