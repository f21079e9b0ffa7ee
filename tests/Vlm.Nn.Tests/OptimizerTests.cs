using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Nn.Optim;
using Vlm.TestSupport;

namespace Vlm.Nn.Tests;

/// <summary>AdamW / SGD / schedules / clipping against PyTorch trajectories from Data/optim_refs.py.</summary>
public class OptimizerTests
{
    private static readonly string[] Names = ["w1", "w2", "b1", "ln.weight"];
    private const int Steps = 6;

    private static readonly Lazy<Dictionary<string, Tensor>> Refs = new(() =>
        SafeTensors.Load(Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Nn.Tests", "Data", "optim_refs.safetensors")));

    private static Dictionary<string, Tensor> FreshParams() =>
        Names.ToDictionary(n => n, n => { var t = Refs.Value[$"init.{n}"].Clone(); t.Name = n; return t.RequireGrad(); });

    private static List<ParamGroup> Groups(Dictionary<string, Tensor> p) =>
    [
        new ParamGroup("decay", [new("w1", p["w1"]), new("w2", p["w2"])]) { WeightDecay = 0.1 },
        new ParamGroup("no_decay", [new("b1", p["b1"]), new("ln.weight", p["ln.weight"])]) { LrScale = 0.5 },
    ];

    private static Optimizer Make(string run, List<ParamGroup> groups)
    {
        Optimizer o = run switch
        {
            "adamw" => new AdamW(groups, lr: 0.02, beta1: 0.9, beta2: 0.99, eps: 1e-6),
            "sgd" => new Sgd(groups, lr: 0.02, momentum: 0.9, dampening: 0.1),
            "sgdn" => new Sgd(groups, lr: 0.02, momentum: 0.9, nesterov: true),
            _ => throw new ArgumentException(run),
        };
        o.Schedule = LrSchedule.LinearWarmupDecay(2, 8);
        return o;
    }

    /// <summary>Feeds step k's reference gradients, clips, steps; returns the clip norm.</summary>
    private static float DoStep(Optimizer opt, Dictionary<string, Tensor> p, int k)
    {
        opt.ZeroGrad();
        foreach (var n in Names)
            p[n].Grad = Refs.Value.TryGetValue($"grad.{k}.{n}", out var g) ? g.Clone() : null;
        float norm = GradClip.ClipGradNorm(p.Values, 1.0);
        opt.Step();
        return norm;
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("sgd")]
    [InlineData("sgdn")]
    public void MatchesPyTorchTrajectory(string run)
    {
        var p = FreshParams();
        var opt = Make(run, Groups(p));
        var norms = Refs.Value[$"{run}.norm"].ToArray();
        for (int k = 0; k < Steps; k++)
        {
            float norm = DoStep(opt, p, k);
            TensorAssert.Close([norms[k]], [norm], 0, 1e-6f, $"{run} clip norm at step {k}");
            foreach (var n in Names)
                TensorAssert.Close(Refs.Value[$"{run}.{k}.{n}"], p[n], 1e-7f, 1e-6f, $"{run} step {k} {n}");
        }
        Assert.Equal(Steps, opt.StepsTaken);
        if (opt is AdamW a)
        {
            Assert.Equal(Steps - 1, a.ParamStep("b1")); // no gradient at step 3
            Assert.Equal(Steps, a.ParamStep("w1"));
        }
    }

    [Fact]
    public void ResumingFromSavedStateIsBitIdentical()
    {
        foreach (var run in new[] { "adamw", "sgd" })
        {
            var p = FreshParams();
            var opt = Make(run, Groups(p));
            for (int k = 0; k < Steps; k++) DoStep(opt, p, k);

            var p2 = FreshParams();
            var opt2 = Make(run, Groups(p2));
            for (int k = 0; k < 3; k++) DoStep(opt2, p2, k);
            var path = Path.Combine(Path.GetTempPath(), $"vlm-optstate-{Guid.NewGuid():N}.safetensors");
            try
            {
                SafeTensors.Save(path, opt2.StateDict());
                var p3 = p2.ToDictionary(kv => kv.Key, kv => { var t = kv.Value.Detach().Clone(); return t.RequireGrad(); });
                var opt3 = Make(run, Groups(p3));
                opt3.LoadStateDict(SafeTensors.Load(path));
                Assert.Equal(3, opt3.StepsTaken);
                for (int k = 3; k < Steps; k++) DoStep(opt3, p3, k);
                foreach (var n in Names) Assert.Equal(p[n].ToArray(), p3[n].ToArray());
            }
            finally { File.Delete(path); }
        }
    }

    [Fact]
    public void LoadStateDictListsEveryProblem()
    {
        var p = FreshParams();
        var opt = Make("adamw", Groups(p));
        DoStep(opt, p, 0);
        var sd = opt.StateDict();
        sd["state.w1.exp_avg"] = Tensor.Zeros(2, 2);
        sd.Remove("state.w2.exp_avg_sq");
        sd["state.nope.exp_avg"] = Tensor.Zeros(1);
        var before = p["w1"].ToArray();
        var fresh = Make("adamw", Groups(p));
        var ex = Assert.Throws<InvalidDataException>(() => fresh.LoadStateDict(sd));
        Assert.Contains("state.w1.exp_avg", ex.Message);
        Assert.Contains("exp_avg_sq", ex.Message);
        Assert.Contains("state.nope.exp_avg", ex.Message);
        Assert.Equal(0, fresh.StepsTaken);
        Assert.Equal(before, p["w1"].ToArray());
    }

    [Fact]
    public void ZeroGradRecycleGivesTheSameTrajectory()
    {
        // Recycling hands the old gradients' buffers to the pool; the next backward reuses them (sizes above the pool's
        // minimum) and every step must match the run that lets the GC take them.
        float[] Run(bool recycle)
        {
            var rng = new Rng(41);
            var w = Tensor.Randn([96, 64], rng, std: 0.1f); w.RequiresGrad = true;
            var b = Tensor.Randn([96], rng); b.RequiresGrad = true;
            var x = Tensor.Randn([50, 64], rng);
            var opt = new AdamW([new ParamGroup("all", [new("w", w), new("b", b)])], lr: 0.01);
            for (int step = 0; step < 4; step++)
            {
                opt.ZeroGrad(recycle);
                Assert.Null(w.Grad);
                F.Linear(x, w, b, gelu: true).Square().Mean().Backward();
                opt.Step();
            }
            return w.ToArray().Concat(b.ToArray()).ToArray();
        }
        Assert.Equal(Run(false), Run(true));
    }

    [Fact]
    public void SchedulesMatchHuggingFaceFormulas()
    {
        var lin = Refs.Value["sched.linear"].ToArray();
        var cos = Refs.Value["sched.cosine"].ToArray();
        var l = LrSchedule.LinearWarmupDecay(3, 12);
        var c = LrSchedule.CosineWarmupDecay(3, 12);
        for (int s = 0; s < 16; s++)
        {
            Assert.Equal(lin[s], (float)l.Factor(s));
            Assert.Equal(cos[s], (float)c.Factor(s));
        }
        Assert.Equal(0.0, l.Factor(0));
        Assert.Equal(1.0, l.Factor(3));
        Assert.Equal(0.0, c.Factor(12));
        Assert.Equal(0.5, LrSchedule.ConstantWithWarmup(4).Factor(2));
        Assert.Throws<ArgumentException>(() => LrSchedule.ByName("triangle", 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => l.Factor(-1));
    }

    [Fact]
    public void AdamWKernelMatchesNaiveReference()
    {
        var rng = new Rng(11);
        foreach (int n in new[] { 1, 7, 8, 37, 1000 })
        {
            float[] R() => Tensor.Randn([n], rng).ToArray();
            var p = R(); var g = R(); var m = R(); var v = R().Select(Math.Abs).ToArray();
            var (p2, m2, v2) = ((float[])p.Clone(), (float[])m.Clone(), (float[])v.Clone());
            var k = AdamW.Coefficients(5, 0.01, 0.05, 0.9, 0.999, 1e-8);
            AdamW.Kernel(p, g, m, v, k);
            AdamW.KernelNaive(p2, g, m2, v2, k);
            Assert.Equal(p2, p); Assert.Equal(m2, m); Assert.Equal(v2, v);
        }
    }

    [Fact]
    public void SgdKernelMatchesNaiveReference()
    {
        var rng = new Rng(12);
        foreach (int n in new[] { 3, 8, 45 })
            foreach (var k in new[]
            {
                new Sgd.Coeffs(0.01f, 0.9f, 0.9f, -0.1f, true, false, false),
                new Sgd.Coeffs(0f, 0.9f, 1f, -0.1f, true, true, true),
                new Sgd.Coeffs(0.1f, 0f, 1f, -0.05f, false, false, false),
            })
            {
                float[] R() => Tensor.Randn([n], rng).ToArray();
                var p = R(); var g = R(); var b = R();
                var (p2, b2) = ((float[])p.Clone(), (float[])b.Clone());
                Sgd.Kernel(p, g, k.HasBuffer ? b : default, k);
                Sgd.KernelNaive(p2, g, k.HasBuffer ? b2 : default, k);
                Assert.Equal(p2, p); Assert.Equal(b2, b);
            }
    }

    [Fact]
    public void LargeParametersSplitAcrossCoresGiveTheSameBits()
    {
        // Above the chunking threshold the step runs in parallel chunks; it must equal one sequential pass.
        const int n = 200_003;
        var rng = new Rng(13);
        var p = Tensor.Randn([n], rng).RequireGrad();
        var grads = Enumerable.Range(0, 3).Select(_ => Tensor.Randn([n], rng)).ToArray();
        var pRef = p.ToArray(); var m = new float[n]; var v = new float[n];
        var opt = new AdamW([new ParamGroup("all", [new("p", p)]) { WeightDecay = 0.1 }], lr: 0.01);
        for (int s = 1; s <= 3; s++)
        {
            p.Grad = grads[s - 1];
            opt.Step();
            AdamW.KernelNaive(pRef, grads[s - 1].ToArray(), m, v, AdamW.Coefficients(s, 0.01, 0.1, 0.9, 0.999, 1e-8));
        }
        Assert.Equal(pRef, p.ToArray());
    }

    [Fact]
    public void FrozenParametersAreSkippedAndGroupsBuiltByName()
    {
        var vb = VarBuilder.Init(new Rng(1));
        _ = new Linear(3, 4, vb["encoder"]["dense"]);
        _ = new LayerNorm(4, vb["encoder"]["LayerNorm"]);
        _ = new Linear(4, 2, vb["head"]);
        var store = vb.Finish();
        var groups = ParamGroups.ByName(store, 0.01, lrScale: n => n.StartsWith("head", StringComparison.Ordinal) ? 10 : 1);
        Assert.Equal(["decay", "no_decay", "decay_lr10", "no_decay_lr10"], groups.Select(g => g.Name).ToArray());
        Assert.Equal(["encoder.dense.weight"], groups[0].Params.Select(kv => kv.Key).ToArray());
        Assert.Equal(["encoder.dense.bias", "encoder.LayerNorm.weight", "encoder.LayerNorm.bias"], groups[1].Params.Select(kv => kv.Key).ToArray());
        Assert.Equal(0.0, groups[1].WeightDecay);
        Assert.Equal(10.0, groups[2].LrScale);

        store.SetRequiresGrad("encoder.", false);
        var opt = new AdamW(groups, lr: 0.1);
        foreach (var (_, t) in store.Named) t.Grad = Tensor.Ones(t.ShapeArray());
        var frozenBefore = store["encoder.dense.weight"].ToArray();
        var headBefore = store["head.weight"].ToArray();
        opt.Step();
        Assert.Equal(frozenBefore, store["encoder.dense.weight"].ToArray());
        Assert.NotEqual(headBefore, store["head.weight"].ToArray());
        Assert.Throws<ArgumentException>(() => new AdamW([groups[0], groups[0]]));
    }

    [Fact]
    public void ClipGradNormScalesOnlyAboveTheLimit()
    {
        var a = Tensor.Zeros(2).RequireGrad(); var b = Tensor.Zeros(1).RequireGrad(); var c = Tensor.Zeros(1).RequireGrad();
        a.Grad = Tensor.FromArray(new float[] { 3, 0 }, 2);
        b.Grad = Tensor.FromArray(new float[] { 4 }, 1);
        float n = GradClip.ClipGradNorm([a, b, c], 10.0);
        Assert.Equal(5f, n);
        Assert.Equal(new float[] { 3, 0 }, a.Grad.ToArray());
        n = GradClip.ClipGradNorm([a, b, c], 1.0);
        Assert.Equal(5f, n);
        Assert.Equal(0.6f, a.Grad[0], 5);
        Assert.Equal(0.8f, b.Grad[0], 5);
        Assert.Equal(4f, GradClip.ClipGradNorm([a, b], 100, double.PositiveInfinity) * 5, 4);
        GradClip.ScaleGrads([a, b], 0.5f);
        Assert.Equal(0.4f, b.Grad[0], 5);
    }
}

public class GradAccumulationTests
{
    [Fact]
    public void AccumulatingScaledMicroBatchLossesGivesTheFullBatchGradient()
    {
        var rng = new Rng(21);
        var lin = new Linear(5, 3, VarBuilder.Init(new Rng(1)));
        var x = Tensor.Randn([8, 5], rng);
        var target = Tensor.Randn([8, 3], rng);
        Tensor Loss(Tensor xb, Tensor tb) { var d = lin.Forward(xb) - tb; return (d * d).Mean(); }

        Loss(x, target).Backward();
        var full = lin.Weight.Grad!.ToArray();
        lin.Weight.Grad = null; lin.Bias!.Grad = null;

        for (int i = 0; i < 4; i++) Loss(x.Narrow(0, 2 * i, 2), target.Narrow(0, 2 * i, 2)).Div(4f).Backward();
        TensorAssert.Close(full, lin.Weight.Grad!.ToArray(), 1e-6f, 1e-5f, "(loss / N) per micro-batch");
        lin.Weight.Grad = null; lin.Bias.Grad = null;

        for (int i = 0; i < 4; i++) Loss(x.Narrow(0, 2 * i, 2), target.Narrow(0, 2 * i, 2)).Backward();
        GradClip.ScaleGrads([lin.Weight, lin.Bias], 0.25f);
        TensorAssert.Close(full, lin.Weight.Grad!.ToArray(), 1e-6f, 1e-5f, "ScaleGrads(1/N) after raw losses");
    }
}
