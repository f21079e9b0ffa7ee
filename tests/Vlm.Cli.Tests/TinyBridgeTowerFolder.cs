using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;
using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Cli.Tests;

/// <summary>
/// A temporary HF-layout BridgeTower folder with random weights for every head (ITM, MLM, contrastive, VQA), the
/// fixture RoBERTa tokenizer and a BridgeTower preprocessor config, plus a few rendered scene images: enough for the
/// CLI commands to run end to end (the numbers mean nothing; parity is proven by the model tests).
/// </summary>
public sealed class TinyBridgeTowerFolder : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "vlm-tinybt-" + Guid.NewGuid().ToString("N"));
    public string Model => Path.Combine(Dir, "model");
    public string Images => Path.Combine(Dir, "images");
    public static readonly string[] Answers = ["red", "blue", "yes", "no"];

    public TinyBridgeTowerFolder()
    {
        Directory.CreateDirectory(Model);
        Directory.CreateDirectory(Images);
        var cfg = JsonNode.Parse(File.ReadAllText(Fixtures.Path("bridgetower_contrastive", "config.json")))!.AsObject();
        cfg["text_config"]!["vocab_size"] = 50265;
        cfg["id2label"] = new JsonObject(Answers.Select((a, i) => KeyValuePair.Create(i.ToString(), (JsonNode?)JsonValue.Create(a))));
        var cfgText = cfg.ToJsonString();
        File.WriteAllText(Path.Combine(Model, "config.json"), cfgText);
        var config = BridgeTowerConfig.FromJson(cfgText);

        var tensors = new Dictionary<string, Tensor>();
        void Take(IEnumerable<KeyValuePair<string, Tensor>> ps, Func<string, bool> keep)
        {
            foreach (var (k, v) in ps) if (keep(k)) tensors[k] = v;
        }
        Take(new BridgeTowerForImageAndTextRetrieval(config, null, new Rng(1)).Parameters.StateDict(), _ => true);
        Take(new BridgeTowerForMaskedLM(config, null, new Rng(2)).Parameters.StateDict(), k => k.StartsWith("mlm_score."));
        Take(new BridgeTowerForContrastiveLearning(config, null, new Rng(3)).Parameters.StateDict(), k => k.StartsWith("itc_") || k == "logit_scale");
        Take(new BridgeTowerForVqa(config, null, new Rng(4)).Parameters.StateDict(), k => k.StartsWith("vqa_classifier."));
        SafeTensors.Save(Path.Combine(Model, "model.safetensors"), tensors);

        foreach (var f in Directory.GetFiles(Fixtures.Path("tokenizers", "roberta")).Where(f => !f.EndsWith("cases.json")))
            File.Copy(f, Path.Combine(Model, Path.GetFileName(f)));
        var pp = JsonNode.Parse(File.ReadAllText(Fixtures.Path("image_preprocessing", "bridgetower_small", "preprocessor_config.json")))!.AsObject();
        pp["size"] = new JsonObject { ["shortest_edge"] = 32 };
        File.WriteAllText(Path.Combine(Model, "preprocessor_config.json"), pp.ToJsonString());

        var gen = new WorldGenerator(3);
        for (int i = 0; i < 5; i++)
        {
            var s = gen.SampleScene(i);
            PngEncoder.Save(new Image(s.Width, s.Height, PixelMode.RGB, Renderer.Render(s)), ImagePath(i));
        }
        File.WriteAllLines(Path.Combine(Dir, "captions.txt"), ["a red circle", "two blue squares", "", "a green cross above a white diamond"]);
    }

    public string ImagePath(int i) => Path.Combine(Images, $"scene{i}.png");

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}
