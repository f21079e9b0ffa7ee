using System.CommandLine;
using System.Globalization;
using Vlm.Training.Blip;

namespace Vlm.Cli;

/// <summary>`vlm blip-pretrain`: BLIP (ITC + ITM + LM) or ALBEF (ITC + ITM + MLM) pre-training of a small model on the
/// embedded synthetic world's image–text pairs (<see cref="BlipWorldPretrain"/>). BLIP runs also write HF
/// BlipForImageTextRetrieval / BlipForConditionalGeneration folders under OUT/hf.</summary>
public static class BlipPretrain
{
    public static Command Build()
    {
        var cmd = new Command("blip-pretrain", "Pre-train a small BLIP or ALBEF on the embedded synthetic world");
        var kind = new Option<string>("--kind") { Description = "blip (ITC+ITM+LM, shared-weights decoder) or albef (6+6-style split encoder, ITC+ITM+MLM)", DefaultValueFactory = _ => "blip" };
        var outDir = new Option<string>("--out") { Description = "Run folder (world, tokenizer, checkpoints, metrics.jsonl, hf/)", DefaultValueFactory = _ => "pretrain-run" };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => 200 };
        var batch = new Option<int>("--batch") { Description = "Pairs per step (ITM draws in-batch negatives: at least 2)", DefaultValueFactory = _ => 16 };
        var scenes = new Option<int>("--scenes") { Description = "Training scenes of the world", DefaultValueFactory = _ => 500 };
        var queue = new Option<int>("--queue") { Description = "ITC feature-queue size", DefaultValueFactory = _ => 256 };
        var hidden = new Option<int>("--hidden") { Description = "Hidden width of both towers", DefaultValueFactory = _ => 128 };
        var textLayers = new Option<int>("--text-layers") { Description = "Text layers (ALBEF: half text-only, half fusion)", DefaultValueFactory = _ => 2 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 3e-4 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the world, initialisation, batches and negatives", DefaultValueFactory = _ => 1 };
        var every = new Option<int>("--checkpoint-every") { Description = "Checkpoint every N steps (0 = final only)", DefaultValueFactory = _ => 50 };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run in --out from its latest checkpoint" };
        foreach (var o in new Option[] { kind, outDir, steps, batch, scenes, queue, hidden, textLayers, lr, seed, every, resume }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var k = pr.GetValue(kind) switch { "blip" => PretrainKind.Blip, "albef" => PretrainKind.Albef, _ => (PretrainKind?)null };
            if (k is null) return Cli.Fail("--kind must be blip or albef");
            if (pr.GetValue(steps) < 1) return Cli.Fail("--steps must be positive");
            if (pr.GetValue(batch) < 2) return Cli.Fail("--batch must be at least 2");
            if (pr.GetValue(hidden) < 32 || pr.GetValue(hidden) % 32 != 0) return Cli.Fail("--hidden must be a positive multiple of 32");
            var o = new BlipWorldOptions
            {
                Kind = k.Value, Seed = pr.GetValue(seed), TrainScenes = pr.GetValue(scenes), QueueSize = pr.GetValue(queue), Hidden = pr.GetValue(hidden),
                TextLayers = pr.GetValue(textLayers),
                Train = new BlipPretrainOptions
                {
                    Steps = pr.GetValue(steps), BatchSize = pr.GetValue(batch), LearningRate = pr.GetValue(lr), Seed = pr.GetValue(seed),
                    CheckpointEvery = pr.GetValue(every), Resume = pr.GetValue(resume),
                },
            };
            try
            {
                var r = BlipWorldPretrain.Run(o, pr.GetValue(outDir)!);
                Console.WriteLine(string.Join(' ', r.Training.Last.Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key}={kv.Value:G4}"))));
                Console.WriteLine($"checkpoints: {r.CheckpointDir}");
                if (r.RetrievalDir != null) Console.WriteLine($"HF folders: {r.RetrievalDir}, {r.CaptioningDir}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or InvalidOperationException or IOException)
            {
                return Cli.Fail(e.Message);
            }
        });
        return cmd;
    }
}
