using Vlm.Core;
using Vlm.Nn;
using Vlm.Nn.Optim;

namespace Vlm.Cli;

/// <summary>
/// In-process A/B timing of one environment switch on the model benchmarks: <c>VLM_AB="NAME=a|b"</c> sets NAME to a
/// (empty: unset) or b before each run, alternating A B / B A round by round in one process, so both variants see
/// the same minutes of the (noisy, shared) machine. Only switches read per call (VLM_LINEAR_SHARE, VLM_FUSION_REF…)
/// take effect. Prints each round's times and the B/A ratio; the result rows carry the medians.
/// </summary>
public static class BenchAb
{
    public static IEnumerable<BenchCase> Cases()
    {
        yield return new BenchCase("ab_train_step_6l_b8", "A/B of VLM_AB=\"NAME=a|b\" on train_step_6l_b8 (interleaved in one process; per-round ratios on stderr)", o => Train(o));
        yield return new BenchCase("ab_mlp_b8", "A/B of VLM_AB=\"NAME=a|b\" on one ViT-B MLP block at batch 8 (fc1+GELU, fc2; forward + backward), interleaved", o => Mlp(o));
        yield return new BenchCase("ab_vit_b16_forward_b8", "A/B of VLM_AB=\"NAME=a|b\" on vit_b16_forward_b8 (interleaved in one process)", o => Vit(o));
    }

    private static (string name, string?[] values) Parse()
    {
        var spec = Environment.GetEnvironmentVariable("VLM_AB") ?? throw new InvalidOperationException("set VLM_AB=\"NAME=a|b\"");
        int eq = spec.IndexOf('=');
        var vals = eq > 0 ? spec[(eq + 1)..].Split('|') : [];
        if (eq <= 0 || vals.Length != 2) throw new InvalidOperationException($"VLM_AB='{spec}' is not NAME=a|b");
        return (spec[..eq], vals.Select(v => v.Length == 0 ? null : v).ToArray());
    }

    private static IEnumerable<BenchResult> Run(string name, string shape, double flop, Action step, int reps)
    {
        // Unset, the case is skipped, so a filter such as "vit_b16_forward_b8" that also matches an A/B name still runs.
        if (Environment.GetEnvironmentVariable("VLM_AB") is null) { Console.Error.WriteLine($"{name}: skipped (set VLM_AB=\"NAME=a|b\")"); yield break; }
        var (var, values) = Parse();
        using var proc = System.Diagnostics.Process.GetCurrentProcess();
        double Cpu() { proc.Refresh(); return proc.TotalProcessorTime.TotalMilliseconds; }
        for (int v = 0; v < 2; v++) { Environment.SetEnvironmentVariable(var, values[v]); step(); }
        var ms = new List<double>[] { [], [] };
        var cpu = new List<double>[] { [], [] };
        for (int r = 0; r < reps; r++)
        {
            foreach (int v in r % 2 == 0 ? new[] { 0, 1 } : [1, 0])
            {
                Environment.SetEnvironmentVariable(var, values[v]);
                double c0 = Cpu();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                step();
                ms[v].Add(sw.Elapsed.TotalMilliseconds);
                cpu[v].Add(Cpu() - c0);
            }
            Console.Error.WriteLine($"ab {name} round {r + 1}: A({var}={values[0] ?? "unset"}) {ms[0][r]:F0} ms cpu {cpu[0][r] / ms[0][r] / Environment.ProcessorCount:P0}, " +
                $"B({values[1] ?? "unset"}) {ms[1][r]:F0} ms cpu {cpu[1][r] / ms[1][r] / Environment.ProcessorCount:P0}, B/A {ms[1][r] / ms[0][r]:F3}");
        }
        static double Med(IEnumerable<double> x) => Bench.Median(x);
        var ratios = ms[1].Zip(ms[0], (b, a) => b / a).ToList();
        Console.Error.WriteLine($"ab {name}: median A {Med(ms[0]):F0} ms, B {Med(ms[1]):F0} ms; median B/A {Med(ratios):F3}; ratios {string.Join(" ", ratios.Select(x => x.ToString("F3")))}; " +
            $"cpu use A {Med(cpu[0].Zip(ms[0], (c, m) => c / m / Environment.ProcessorCount)):P1}, B {Med(cpu[1].Zip(ms[1], (c, m) => c / m / Environment.ProcessorCount)):P1}; " +
            $"cpu ms A {Med(cpu[0]):F0}, B {Med(cpu[1]):F0}, median B/A {Med(cpu[1].Zip(cpu[0], (b, a) => b / a)):F3}");
        Environment.SetEnvironmentVariable(var, null);
        for (int v = 0; v < 2; v++)
            yield return new BenchResult(name, $"{var}={values[v] ?? "unset"}", shape, Environment.ProcessorCount, flop / Med(ms[v]) / 1e6, Med(ms[v]), Bench.PeakMb());
    }

    private static IEnumerable<BenchResult> Train(BenchOptions o)
    {
        var (layers, store) = BenchModels.BuildEncoder(6);
        var opt = new AdamW(ParamGroups.All(store), lr: 1e-4);
        var x = Tensor.Randn([8, 197, 768], new Rng(1));
        void Step()
        {
            opt.ZeroGrad(recycle: true);
            var y = BenchModels.RunEncoder(layers, x);
            var loss = y.Square().Mean();
            loss.Backward();
            opt.Step();
        }
        return Run("ab_train_step_6l_b8", "L6 B8 T197 D768", 3 * BenchModels.EncoderFlop(6, 8), Step, o.Reps);
    }

    private static IEnumerable<BenchResult> Mlp(BenchOptions o)
    {
        var vb = VarBuilder.Init(new Rng(0));
        var fc1 = new Linear(768, 3072, vb["fc1"]);
        var fc2 = new Linear(3072, 768, vb["fc2"]);
        var x = Tensor.Randn([8, 197, 768], new Rng(1)).RequireGrad();
        void Step()
        {
            x.Grad = null; fc1.Weight.Grad = null; fc2.Weight.Grad = null; fc1.Bias!.Grad = null; fc2.Bias!.Grad = null;
            var h = fc1.ForwardGelu(x);
            var y = fc2.Forward(h);
            h.Dispose();
            y.Square().Mean().Backward();
        }
        return Run("ab_mlp_b8", "B8 T197 768-3072-768", 3 * 2 * 2.0 * 1576 * 768 * 3072, Step, o.Reps);
    }

    private static IEnumerable<BenchResult> Vit(BenchOptions o)
    {
        var (layers, _) = BenchModels.BuildEncoder(12);
        foreach (var l in layers) l.Eval();
        var x = Tensor.Randn([8, 197, 768], new Rng(1));
        void Fwd() { using (Tensor.Inference()) BenchModels.RunEncoder(layers, x).Dispose(); }
        return Run("ab_vit_b16_forward_b8", "L12 B8 T197 D768", BenchModels.EncoderFlop(12, 8), Fwd, o.Reps);
    }
}
