// An HF BridgeTower folder as users download it: config.json, weights (model.safetensors, sharded, or
// pytorch_model.bin), tokenizer files and preprocessor_config.json. Heads are built lazily and only when the
// checkpoint holds their weights, so one folder serves ITM, MLM, contrastive and VQA calls.
using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Models.BridgeTower;

public sealed class BridgeTowerFolder : IDisposable
{
    private readonly IWeightSource _weights;
    private BridgeTowerForImageAndTextRetrieval? _itm;
    private BridgeTowerForMaskedLM? _mlm;
    private BridgeTowerForContrastiveLearning? _itc;
    private BridgeTowerForVqa? _vqa;
    private readonly object _lock = new();

    public string Path { get; }
    public BridgeTowerConfig Config { get; }
    public BridgeTowerProcessor Processor { get; }

    private BridgeTowerFolder(string path, BridgeTowerConfig config, IWeightSource weights, BridgeTowerProcessor processor)
    {
        Path = path; Config = config; _weights = weights; Processor = processor;
    }

    public static BridgeTowerFolder Open(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder not found: {dir}");
        var config = BridgeTowerConfig.Load(System.IO.Path.Combine(dir, "config.json"));
        var processor = BridgeTowerProcessor.FromFolder(dir);
        var weights = CheckpointLoader.Open(dir);
        return new BridgeTowerFolder(dir, config, weights, processor);
    }

    private bool HasHead(string prefix) => _weights.Names.Any(n => n.StartsWith(prefix, StringComparison.Ordinal));

    public bool HasItm => HasHead("itm_score.");
    public bool HasMlm => HasHead("mlm_score.");
    public bool HasContrastive => HasHead("itc_text_head.");
    public bool HasVqa => HasHead("vqa_classifier.");

    private T Head<T>(ref T? slot, bool present, string what, Func<T> make) where T : class
    {
        lock (_lock)
        {
            if (slot != null) return slot;
            if (!present) throw new InvalidOperationException($"{Path}: the checkpoint has no {what} head weights");
            slot = make();
            (slot as Nn.Module)!.Eval();
            return slot;
        }
    }

    public BridgeTowerForImageAndTextRetrieval Itm => Head(ref _itm, HasItm, "ITM (itm_score.*)", () => new BridgeTowerForImageAndTextRetrieval(Config, _weights));
    public BridgeTowerForMaskedLM Mlm => Head(ref _mlm, HasMlm, "MLM (mlm_score.*)", () => new BridgeTowerForMaskedLM(Config, _weights));
    public BridgeTowerForContrastiveLearning Contrastive => Head(ref _itc, HasContrastive, "contrastive (itc_*_head.*)", () => new BridgeTowerForContrastiveLearning(Config, _weights));
    public BridgeTowerForVqa Vqa => Head(ref _vqa, HasVqa, "VQA (vqa_classifier.*)", () => new BridgeTowerForVqa(Config, _weights));

    /// <summary>Which heads the checkpoint carries, for messages and the service's health report.</summary>
    public IEnumerable<string> Heads()
    {
        if (HasItm) yield return "itm";
        if (HasMlm) yield return "mlm";
        if (HasContrastive) yield return "contrastive";
        if (HasVqa) yield return "vqa";
    }

    public void Dispose() => _weights.Dispose();
}
