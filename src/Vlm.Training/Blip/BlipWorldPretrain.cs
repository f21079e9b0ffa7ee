// BLIP / ALBEF pre-training end to end on the embedded synthetic world: world → JSONL pairs + PNGs → byte-level BPE
// (WorldBpe) with two extra special tokens, [DEC] and [ENC], as BLIP adds them to BERT's vocabulary → a small model of the chosen
// configuration → BlipPretrainer → checkpoints (and, for BLIP, HF retrieval / captioning folders).
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Tokenizers;
using Vlm.Training.Data;
using Vlm.Training.Text;
using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Codecs;
using Vlm.Vision.Processing;

namespace Vlm.Training.Blip;

public sealed record BlipWorldOptions
{
    public PretrainKind Kind { get; init; } = PretrainKind.Blip;
    public ulong Seed { get; init; } = 1;
    public int TrainScenes { get; init; } = 500;
    public int ImageSize { get; init; } = 64;
    public int PatchSize { get; init; } = 16;
    public int Hidden { get; init; } = 128;
    public int VisionLayers { get; init; } = 2;
    /// <summary>Text layers (ALBEF: half text-only, half fusion).</summary>
    public int TextLayers { get; init; } = 2;
    public int QueueSize { get; init; } = 256;
    public int MaxTextLength { get; init; } = 40;
    public BlipPretrainOptions Train { get; init; } = new() { Steps = 200, BatchSize = 16, LearningRate = 3e-4 };
}

public sealed record BlipWorldResult(BlipPretrainResult Training, string CheckpointDir, string? RetrievalDir, string? CaptioningDir, string TokenizerDir);

public static class BlipWorldPretrain
{
    /// <summary>BLIP's added tokens: the decoder's bos and the ITM encoder's first token.</summary>
    public static readonly string[] AddedTokens = ["[DEC]", "[ENC]"];

    /// <summary>The model config for a world tokenizer that has <see cref="AddedTokens"/>.</summary>
    public static BlipPretrainConfig MakeConfig(BlipWorldOptions o, ITokenizer tok)
    {
        int v = tok.VocabSize;
        int dec = tok.TokenToId("[DEC]") ?? throw new InvalidOperationException("the tokenizer has no [DEC] token");
        int enc = tok.TokenToId("[ENC]") ?? throw new InvalidOperationException("the tokenizer has no [ENC] token");
        int h = o.Hidden, heads = Math.Max(1, h / 32);
        var model = new BlipConfig
        {
            TextConfig = new BlipTextConfig
            {
                VocabSize = v, HiddenSize = h, EncoderHiddenSize = h, IntermediateSize = 4 * h, NumHiddenLayers = o.TextLayers, NumAttentionHeads = heads,
                MaxPositionEmbeddings = Math.Max(64, o.MaxTextLength), BosTokenId = dec, PadTokenId = tok.PadId,
                SepTokenId = tok.SepId ?? tok.EosId ?? throw new InvalidOperationException("the tokenizer has no end-of-text token"),
                EosTokenId = tok.EosId ?? tok.SepId ?? 0,
            },
            VisionConfig = new BlipVisionConfig { HiddenSize = h, IntermediateSize = 4 * h, NumHiddenLayers = o.VisionLayers, NumAttentionHeads = heads, ImageSize = o.ImageSize, PatchSize = o.PatchSize },
            ImageTextHiddenSize = Math.Min(256, h),
        };
        if (o.Kind == PretrainKind.Blip) return BlipPretrainConfig.Blip(model, encTokenId: enc) with { QueueSize = o.QueueSize };
        var special = new List<long> { tok.PadId };
        foreach (var s in new[] { tok.ClsId, tok.SepId, tok.BosId, tok.EosId, tok.MaskId, dec, enc }) if (s is int x) special.Add(x);
        int firstOrdinary = 0;
        while (special.Contains(firstOrdinary) || firstOrdinary == tok.UnkId) firstOrdinary++;
        return BlipPretrainConfig.Albef(model, tok.MaskId ?? throw new InvalidOperationException("ALBEF needs a mask token"), special.ToArray(), firstOrdinary) with { QueueSize = o.QueueSize };
    }

    public static BlipWorldResult Run(BlipWorldOptions o, string outDir, TextWriter? log = null, TextWriter? progress = null)
    {
        log ??= Console.Error;
        Directory.CreateDirectory(outDir);
        var worldDir = Path.Combine(outDir, "world");
        var gen = new WorldGenerator(o.Seed, new WorldOptions { MinImageSize = o.ImageSize, MaxImageSize = o.ImageSize });
        if (!(o.Train.Resume && File.Exists(Path.Combine(worldDir, "pairs_train.jsonl"))))
            WorldDataset.Write(worldDir, gen, new WorldSplits(o.TrainScenes, 0, 0), (p, rgb, w, hgt) => PngEncoder.Save(new Image(w, hgt, PixelMode.RGB, rgb), p));
        var pairs = DatasetFormats.ReadPairsJsonl(Path.Combine(worldDir, "pairs_train.jsonl"), worldDir);
        if (pairs.Count < 2) throw new InvalidDataException($"{worldDir}: fewer than 2 training pairs");
        var tokDir = Path.Combine(outDir, "tokenizer");
        WorldBpe.TrainAndSave(pairs.Select(p => p.Caption), tokDir, additionalSpecials: AddedTokens);
        var tok = AutoTokenizer.FromFolder(tokDir);
        var text = new TextCollator(tok, o.MaxTextLength);
        File.WriteAllText(Path.Combine(outDir, "preprocessor_config.json"), Training.Checkpoint.PreprocessorJson(o.ImageSize));
        var pixels = new PixelCache((BridgeTowerImageProcessor)ImageProcessorBase.FromConfigFile(Path.Combine(outDir, "preprocessor_config.json")));
        var config = MakeConfig(o, tok);
        var model = new BlipPretrainModel(config, new Rng(o.Seed ^ 0xB11F));
        log.WriteLine($"[{config.Kind.ToString().ToLowerInvariant()}] {pairs.Count} pairs, vocab {config.Model.TextConfig.VocabSize}, {model.Parameters.NumElements:N0} trained parameters");
        var trainer = new BlipPretrainer(model, outDir, log) { TokenizerDir = tokDir, ProgressOutput = progress };
        var opts = o.Train;
        var result = trainer.Run(opts, s => BlipPretrainer.MakeBatch(pairs, text, pixels.Batch, opts.BatchSize, opts.Seed, s));
        string? retrieval = null, captioning = null;
        if (config.Kind == PretrainKind.Blip && result.Completed)
        {
            retrieval = Path.Combine(outDir, "hf", "retrieval");
            captioning = Path.Combine(outDir, "hf", "captioning");
            BlipCheckpoint.ExportHf(retrieval, model, BlipExport.Retrieval, tokDir);
            BlipCheckpoint.ExportHf(captioning, model, BlipExport.Captioning, tokDir);
        }
        return new BlipWorldResult(result, trainer.CheckpointDir, retrieval, captioning, tokDir);
    }
}
