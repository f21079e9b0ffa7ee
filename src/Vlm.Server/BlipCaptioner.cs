using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Models.Generation;
using Vlm.Tokenizers;
using Vlm.Vision;
using Vlm.Vision.Processing;

namespace Vlm.Server;

/// <summary>
/// A BLIP captioning folder loaded once (HF BlipForConditionalGeneration, arXiv 2201.12086): tokenizer, model,
/// image processor (preprocessor_config.json, else BLIP's defaults at the vision size) and generation_config.json.
/// Greedy decoding unless the folder's generation config asks otherwise. Not thread-safe: one caller at a time.
/// </summary>
public sealed class BlipCaptioner
{
    private readonly ITokenizer _tok;
    private readonly BlipForConditionalGeneration _model;
    private readonly ImageProcessorBase _processor;
    private readonly GenerationOptions _base;

    public string Path { get; }

    private BlipCaptioner(string path, ITokenizer tok, BlipForConditionalGeneration model, ImageProcessorBase processor, GenerationOptions baseOptions)
    {
        Path = path; _tok = tok; _model = model; _processor = processor; _base = baseOptions;
    }

    public static BlipCaptioner Open(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"BLIP model folder not found: {folder}");
        var tok = AutoTokenizer.FromFolder(folder);   // first: a folder without tokenizer files fails before the weights load
        var model = BlipForConditionalGeneration.FromFolder(folder);
        model.Eval();
        var pp = System.IO.Path.Combine(folder, "preprocessor_config.json");
        var processor = File.Exists(pp)
            ? ImageProcessorBase.FromConfigFile(pp)
            : new BlipImageProcessor { Height = model.Config.VisionConfig.ImageSize, Width = model.Config.VisionConfig.ImageSize };
        var gc = System.IO.Path.Combine(folder, "generation_config.json");
        return new BlipCaptioner(folder, tok, model, processor, File.Exists(gc) ? GenerationConfigFile.Load(gc) : new GenerationOptions());
    }

    /// <summary>Caption of <paramref name="image"/>, continuing <paramref name="prompt"/> when given.</summary>
    public string Caption(Image image, string? prompt, int maxNewTokens) => Caption(image, prompt, o => o with { MaxNewTokens = maxNewTokens });

    /// <summary>As above, with the folder's generation options edited by <paramref name="edit"/> (beams, sampling, seed).</summary>
    public string Caption(Image image, string? prompt, Func<GenerationOptions, GenerationOptions> edit)
    {
        var pixels = _processor.Preprocess(image).PixelValues;
        Tensor? ids = null, mask = null;
        if (!string.IsNullOrEmpty(prompt))
        {
            var enc = _tok.Encode(prompt);
            ids = Tensor.FromArray(enc.Ids, 1, enc.Ids.Length);
            mask = Tensor.FromArray(enc.AttentionMask, 1, enc.AttentionMask.Length);
        }
        var opts = edit(_base);
        GenerationResult r;
        using (Tensor.Inference()) r = _model.Generate(pixels, ids, mask, opts);
        return _tok.Decode(r.Sequences.ToInt64Array(), skipSpecialTokens: true);
    }
}
