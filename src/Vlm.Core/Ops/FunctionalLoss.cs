using System.Numerics.Tensors;
using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>How a loss reduces its per-element values (torch's reduction= argument).</summary>
public enum Reduction
{
    /// <summary>Average (over non-ignored targets for cross-entropy; over all elements otherwise).</summary>
    Mean,
    Sum,
    /// <summary>Per-element losses, no reduction.</summary>
    None,
    /// <summary>Sum divided by the first dim's size (kl_div only).</summary>
    BatchMean,
}

/// <summary>Losses with torch.nn.functional semantics (float32), each one fused op with its own backward.</summary>
public static partial class F
{
    /// <summary>torch.nn.functional.cross_entropy with class-index targets (optional per-class <paramref name="weight"/> (C):
    /// Mean then divides by Σ weight[target] over non-ignored targets, and smoothing uses Σ_c weight_c·(−log p_c), as torch).
    /// logits (N, C) with targets (N), or (N, C, d1, ...) with targets (N, d1, ...) (class dim 1, as torch).
    /// For language-model logits (B, T, V) flatten first: logits.Reshape(-1, V), targets.Reshape(-1).
    /// Targets equal to <paramref name="ignoreIndex"/> contribute nothing, and Mean divides by the number of the others
    /// (NaN when there are none, as torch). Label smoothing ε: loss = (1−ε)·nll + ε/C · Σ_c −log p_c.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100, float labelSmoothing = 0f,
        Reduction reduction = Reduction.Mean, Tensor? weight = null)
    {
        logits.RequireFloat();
        if (reduction == Reduction.BatchMean) throw new ArgumentException("cross_entropy does not take reduction BatchMean");
        if (!(labelSmoothing >= 0f && labelSmoothing <= 1f)) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), $"label smoothing must be in [0, 1], got {labelSmoothing}");
        if (targets.DType is not (DType.Int64 or DType.Int32))
            throw new ArgumentException($"cross_entropy targets must be int64 class indices, got {targets.DType} (probability targets are not supported)");
        if (logits.Rank < 2) throw new ArgumentException($"cross_entropy logits must be (N, C) or (N, C, d...), got {logits.ShapeString}");
        int C = logits.Size(1);
        var expectT = new List<int> { logits.Size(0) };
        for (int i = 2; i < logits.Rank; i++) expectT.Add(logits.Size(i));
        if (!targets.Shape.SequenceEqual(expectT.ToArray()))
            throw new ArgumentException($"cross_entropy targets shape {targets.ShapeString} does not match logits {logits.ShapeString} (expected {ShapeUtil.Format(expectT.ToArray())})");

        // Rows of C classes: (N, C) as is; (N, C, d...) moved to (N, d..., C).
        Tensor rowsView;
        Tensor? permView = null;
        int[]? perm = null, inversePerm = null;
        using (GradMode.Disable())
        {
            if (logits.Rank == 2) rowsView = logits;
            else
            {
                perm = new[] { 0 }.Concat(Enumerable.Range(2, logits.Rank - 2)).Append(1).ToArray();
                inversePerm = new int[perm.Length];
                for (int i = 0; i < perm.Length; i++) inversePerm[perm[i]] = i;
                rowsView = permView = logits.Permute(perm);
            }
            rowsView = rowsView.Contiguous();
        }
        float[]? cw = null;
        if (weight != null)
        {
            weight.RequireFloat();
            if (weight.Rank != 1 || weight.Size(0) != C)
                throw new ArgumentException($"cross_entropy weight {weight.Name ?? ""} {weight.ShapeString} must have one value per class ({C})");
            cw = weight.ToArray();
        }
        float cwSum = cw is null ? C : cw.Sum();
        var tgt = targets.ToInt64Array();
        int M = tgt.Length;
        float eps = labelSmoothing;
        var lsm = new float[(long)M * C > int.MaxValue ? throw new ArgumentException("cross_entropy input too large") : M * C];
        var perRow = new float[M];
        for (int i = 0; i < M; i++)
            if (tgt[i] != ignoreIndex && (tgt[i] < 0 || tgt[i] >= C))
                throw new ArgumentException($"cross_entropy target {tgt[i]} at flat position {i} is out of range [0, {C}) and is not ignore_index {ignoreIndex}");
        float[] rd = rowsView.Data; int ro = rowsView.Offset;
        ForChunks(M, (long)M * C * 8, (r0, r1) =>
        {
            for (int i = r0; i < r1; i++)
            {
                var row = lsm.AsSpan(i * C, C);
                LogSoftmaxRow(rd.AsSpan(ro + i * C, C), row);
                if (tgt[i] == ignoreIndex) { perRow[i] = 0f; continue; }
                float nll = -row[(int)tgt[i]];
                if (cw != null) nll *= cw[tgt[i]];
                if (eps == 0f) { perRow[i] = nll; continue; }
                float smooth = cw is null ? -TensorPrimitives.Sum(row) : -TensorPrimitives.Dot(row, cw);
                perRow[i] = (1f - eps) * nll + eps / C * smooth;
            }
        });
        // The backward reads the log-probabilities, not the logits: a permuted view or private copy is let go now.
        var outShape = rowsView.ShapeArray();
        Tensor.DropCopy(rowsView, logits);
        Tensor.DropCopy(permView, rowsView);
        // Mean's divisor: the count of non-ignored targets, or the sum of their class weights.
        double valid = 0;
        for (int i = 0; i < M; i++) if (tgt[i] != ignoreIndex) valid += cw is null ? 1 : cw[tgt[i]];

        Tensor result;
        if (reduction == Reduction.None) result = Tensor.FromArray(perRow, targets.ShapeArray());
        else
        {
            double s = 0;
            // torch sums the nll and smoothing parts separately; the per-row blend is the same up to rounding.
            foreach (var v in perRow) s += v;
            result = Tensor.Scalar(reduction == Reduction.Sum ? (float)s : (float)(s / valid));
        }
        if (!Recorder.ShouldRecord(logits)) return result;
        return Recorder.Record(result, "cross_entropy", [logits], g =>
        {
            var gc = g.Contiguous();
            float[] coef = new float[M];
            if (reduction == Reduction.None) { var gs = gc.Span; for (int i = 0; i < M; i++) coef[i] = gs[i]; }
            else
            {
                float gv = gc.Item();
                float c = reduction == Reduction.Sum ? gv : (float)(gv / valid);
                Array.Fill(coef, c);
            }
            Tensor.DropCopy(gc, g);
            var dRows = Tensor.NewResult(outShape);
            var dd = dRows.Data;
            ForChunks(M, (long)M * C * 4, (r0, r1) =>
            {
                for (int i = r0; i < r1; i++)
                {
                    var drow = dd.AsSpan(i * C, C);
                    if (tgt[i] == ignoreIndex) { drow.Clear(); continue; }
                    int y = (int)tgt[i];
                    FastMathExp(lsm.AsSpan(i * C, C), drow);
                    if (cw is null)
                    {
                        // d/dlogits = coef·(softmax − (1−ε)·onehot − ε/C)
                        if (eps != 0f) TensorPrimitives.Subtract(drow, eps / C, drow);
                        drow[y] -= 1f - eps;
                        TensorPrimitives.Multiply(drow, coef[i], drow);
                        continue;
                    }
                    // With class weights w: coef·((1−ε)·w_y·(p − onehot) + ε/C·(p·Σw − w))
                    float a = (1f - eps) * cw[y] + eps / C * cwSum;
                    TensorPrimitives.Multiply(drow, a, drow);
                    if (eps != 0f) TensorPrimitives.MultiplyAdd(cw, -eps / C, drow, drow);
                    drow[y] -= (1f - eps) * cw[y];
                    TensorPrimitives.Multiply(drow, coef[i], drow);
                }
            });
            if (inversePerm is null) return [dRows];
            var dLogits = dRows.Permute(inversePerm);   // the view holds the buffer; the row-major tensor is let go
            dRows.Dispose();
            return [dLogits];
        });
    }

    private static void FastMathExp(ReadOnlySpan<float> x, Span<float> d) => Kernels.FastMath.Exp(x, d);

    /// <summary>torch.nn.functional.binary_cross_entropy_with_logits, computed stably:
    /// ℓ = (1−t)·x + (1 + (pw−1)·t)·(log(1 + e^{−|x|}) + max(−x, 0)), times <paramref name="weight"/>.
    /// Gradients flow to logits and targets; weight and posWeight (broadcast to the logits) get none.</summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor targets, Tensor? weight = null,
        Reduction reduction = Reduction.Mean, Tensor? posWeight = null)
    {
        logits.RequireFloat(); targets.RequireFloat();
        if (reduction == Reduction.BatchMean) throw new ArgumentException("binary_cross_entropy_with_logits does not take reduction BatchMean");
        if (!logits.Shape.SequenceEqual(targets.Shape))
            throw new ArgumentException($"binary_cross_entropy_with_logits: target size {targets.ShapeString} must equal input size {logits.ShapeString}");
        var shape = logits.ShapeArray();
        int n = logits.Numel;
        var x = logits.ToArray();
        var t = targets.ToArray();
        float[]? w = null, pw = null;
        using (GradMode.Disable())
        {
            if (weight != null) { weight.RequireFloat(); using var we = weight.Expand(shape); w = we.ToArray(); }
            if (posWeight != null) { posWeight.RequireFloat(); using var pe = posWeight.Expand(shape); pw = pe.ToArray(); }
        }
        var loss = new float[n];
        for (int i = 0; i < n; i++)
        {
            float xi = x[i], ti = t[i];
            float sp = MathF.Log(1f + MathF.Exp(-MathF.Abs(xi))) + MathF.Max(-xi, 0f); // softplus(−x)
            float lw = pw is null ? 1f : 1f + (pw[i] - 1f) * ti;
            float l = (1f - ti) * xi + lw * sp;
            loss[i] = w is null ? l : l * w[i];
        }
        var result = ReduceElementwise(loss, shape, reduction);
        if (!Recorder.ShouldRecord(logits, targets)) return result;
        return Recorder.Record(result, "binary_cross_entropy_with_logits", [logits, targets], g =>
        {
            var coef = ElementwiseCoefficients(g, n, reduction, n);
            var dx = logits.RequiresGrad ? new float[n] : null;
            var dt = targets.RequiresGrad ? new float[n] : null;
            for (int i = 0; i < n; i++)
            {
                float xi = x[i], ti = t[i], c = coef[i] * (w is null ? 1f : w[i]);
                float sig = xi >= 0 ? 1f / (1f + MathF.Exp(-xi)) : MathF.Exp(xi) / (1f + MathF.Exp(xi));
                float p = pw is null ? 1f : pw[i];
                float lw = 1f + (p - 1f) * ti;
                // dℓ/dx = (1 − t) − lw·(1 − σ(x)); dℓ/dt = −x + (pw − 1)·softplus(−x)
                if (dx != null) dx[i] = c * ((1f - ti) - lw * (1f - sig));
                if (dt != null)
                {
                    float sp = MathF.Log(1f + MathF.Exp(-MathF.Abs(xi))) + MathF.Max(-xi, 0f);
                    dt[i] = c * (-xi + (p - 1f) * sp);
                }
            }
            return [dx is null ? null : Tensor.FromArray(dx, shape), dt is null ? null : Tensor.FromArray(dt, shape)];
        });
    }

    /// <summary>torch.nn.functional.kl_div(input, target): input holds log-probabilities; target probabilities
    /// (or log-probabilities with <paramref name="logTarget"/>). ℓ = t·(log t − x), 0 where t = 0.
    /// Mean divides by the element count, BatchMean by input.size(0) (the mathematically correct KL).</summary>
    public static Tensor KlDiv(Tensor input, Tensor target, Reduction reduction = Reduction.Mean, bool logTarget = false)
    {
        input.RequireFloat(); target.RequireFloat();
        if (!input.Shape.SequenceEqual(target.Shape))
            throw new ArgumentException($"kl_div: target shape {target.ShapeString} must equal input shape {input.ShapeString}");
        var shape = input.ShapeArray();
        int n = input.Numel;
        var x = input.Contiguous().ToArray();
        var t = target.Contiguous().ToArray();
        var loss = new float[n];
        for (int i = 0; i < n; i++)
            loss[i] = logTarget ? MathF.Exp(t[i]) * (t[i] - x[i]) : t[i] == 0f ? 0f : t[i] * (MathF.Log(t[i]) - x[i]);
        if (reduction == Reduction.BatchMean && input.Rank == 0) throw new ArgumentException("kl_div batchmean needs an input of rank ≥ 1");
        int batch = input.Rank == 0 ? 1 : input.Size(0);
        var result = reduction == Reduction.BatchMean
            ? Tensor.Scalar((float)(SumDouble(loss) / batch))
            : ReduceElementwise(loss, shape, reduction);
        if (!Recorder.ShouldRecord(input, target)) return result;
        return Recorder.Record(result, "kl_div", [input, target], g =>
        {
            var coef = ElementwiseCoefficients(g, n, reduction, reduction == Reduction.BatchMean ? batch : n);
            var dx = input.RequiresGrad ? new float[n] : null;
            var dt = target.RequiresGrad ? new float[n] : null;
            for (int i = 0; i < n; i++)
            {
                if (logTarget)
                {
                    float et = MathF.Exp(t[i]);
                    if (dx != null) dx[i] = -et * coef[i];
                    if (dt != null) dt[i] = et * (t[i] - x[i] + 1f) * coef[i];
                }
                else
                {
                    if (dx != null) dx[i] = -t[i] * coef[i];
                    // d/dt [t·(log t − x)] = log t + 1 − x; at t = 0 torch's masked formula back-propagates 0·(−inf) = NaN,
                    // and we keep that rather than differ silently (targets rarely need gradients).
                    if (dt != null) dt[i] = t[i] == 0f ? float.NaN : (MathF.Log(t[i]) + 1f - x[i]) * coef[i];
                }
            }
            return [dx is null ? null : Tensor.FromArray(dx, shape), dt is null ? null : Tensor.FromArray(dt, shape)];
        });
    }

    /// <summary>torch.nn.functional.mse_loss: mean (or sum / none) of (input − target)², target broadcast to input.</summary>
    public static Tensor MseLoss(Tensor input, Tensor target, Reduction reduction = Reduction.Mean)
    {
        if (reduction == Reduction.BatchMean) throw new ArgumentException("mse_loss does not take reduction BatchMean");
        var d = input.Sub(target);
        var sq = d.Mul(d);
        return reduction switch
        {
            Reduction.None => sq,
            Reduction.Sum => sq.Sum(),
            _ => sq.Mean(),
        };
    }

    private static double SumDouble(float[] a)
    {
        double s = 0;
        foreach (var v in a) s += v;
        return s;
    }

    private static Tensor ReduceElementwise(float[] loss, int[] shape, Reduction reduction) => reduction switch
    {
        Reduction.None => Tensor.FromArray(loss, shape),
        Reduction.Sum => Tensor.Scalar((float)SumDouble(loss)),
        _ => Tensor.Scalar((float)(SumDouble(loss) / loss.Length)),
    };

    /// <summary>Per-element upstream gradient of an element-wise loss: g itself for None, g/divisor for Mean-like, g for Sum.</summary>
    private static float[] ElementwiseCoefficients(Tensor g, int n, Reduction reduction, int divisor)
    {
        var c = new float[n];
        if (reduction == Reduction.None)
        {
            var gc = g.Contiguous();
            gc.Span.CopyTo(c);
            Tensor.DropCopy(gc, g);
            return c;
        }
        float gv = g.Item();
        Array.Fill(c, reduction == Reduction.Sum ? gv : gv / divisor);
        return c;
    }
}
