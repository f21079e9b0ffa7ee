using System.CommandLine;
using Vlm.Core;

namespace Vlm.Cli;

/// <summary>`vlm demo`: until the training pipeline lands, an engine self-check (a tiny model trained end to end).</summary>
public static class Demo
{
    public static Command Build()
    {
        var cmd = new Command("demo", "Run the main job on embedded synthetic data");
        cmd.SetAction(_ =>
        {
            var rng = new Rng(0);
            var w = Tensor.Randn([4, 1], rng).RequireGrad();
            var x = Tensor.Randn([64, 4], rng);
            var y = x.MatMul(Tensor.FromArray(new float[] { 1, -2, 3, 0.5f }, 4, 1));
            float loss = 0;
            for (int step = 0; step < 200; step++)
            {
                w.Grad = null;
                var diff = x.MatMul(w).Sub(y);
                var l = diff.Mul(diff).Mean();
                l.Backward();
                using (Tensor.NoGrad()) w.AddInPlace(w.Grad!, -0.1f);
                loss = l.Item();
            }
            Console.WriteLine($"self-check: linear regression loss after 200 steps = {loss:G4}");
            return loss < 1e-4 ? 0 : 1;
        });
        return cmd;
    }
}
