// HF BridgeTowerProcessor: the RoBERTa tokenizer plus BridgeTowerImageProcessor (called with do_center_crop=True,
// as HF's processor does), and the string/image-level task API on top of BridgeTowerTasks.
using Vlm.Core;
using Vlm.Tokenizers;
using Vlm.Vision;
using Vlm.Vision.Processing;

namespace Vlm.Models.BridgeTower;

public sealed class BridgeTowerProcessor(ITokenizer tokenizer, BridgeTowerImageProcessor imageProcessor)
{
    public ITokenizer Tokenizer { get; } = tokenizer;
    public BridgeTowerImageProcessor ImageProcessor { get; } = imageProcessor;

    /// <summary>An HF folder with the tokenizer files and preprocessor_config.json.</summary>
    public static BridgeTowerProcessor FromFolder(string dir)
    {
        var ip = ImageProcessorBase.FromConfigFile(Path.Combine(dir, "preprocessor_config.json")) as BridgeTowerImageProcessor
            ?? throw new InvalidDataException($"{dir}: preprocessor_config.json is not a BridgeTowerImageProcessor");
        return new BridgeTowerProcessor(AutoTokenizer.FromFolder(dir), ip);
    }

    /// <summary>Right-padded ids and mask (B, T) int64; texts longer than <paramref name="maxLength"/> are truncated.</summary>
    public (Tensor InputIds, Tensor AttentionMask) EncodeTexts(IReadOnlyList<string> texts, int? maxLength = null)
    {
        var b = Tokenizer.EncodeBatch(texts, maxLength: maxLength, truncation: maxLength is null ? Truncation.None : Truncation.LongestFirst, padding: Padding.Longest);
        return (b.InputIds, b.AttentionMask);
    }

    /// <summary>pixel_values (B, 3, H, W) for RGB images.</summary>
    public Tensor EncodeImages(IReadOnlyList<Image> images) => ImageProcessor.Preprocess(images, doCenterCrop: true).PixelValues;

    /// <summary>ITM match probability of one image with each text.</summary>
    public ItmScore[] ItmScores(BridgeTowerForImageAndTextRetrieval model, Image image, IReadOnlyList<string> texts)
    {
        var (ids, mask) = EncodeTexts(texts);
        var px = EncodeImages([image]);
        return model.ItmScores(ids, mask, px.Expand(texts.Count, -1, -1, -1).Contiguous());
    }

    /// <summary>Text-to-image retrieval: contrastive top-k over the images, re-ranked by ITM when given.</summary>
    public RetrievalHit[] Retrieve(BridgeTowerForContrastiveLearning itc, string query, IReadOnlyList<Image> images, int k,
        BridgeTowerForImageAndTextRetrieval? itm = null)
    {
        var (ids, mask) = EncodeTexts([query]);
        var px = EncodeImages(images);
        var embeds = itc.EmbedImages(px);
        return BridgeTowerTasks.Retrieve(itc, ids, mask, embeds, k, itm, i => px.Narrow(0, i, 1).Contiguous());
    }

    /// <summary>Top-k tokens (as text) for each mask token of <paramref name="text"/> (written with the tokenizer's mask token).</summary>
    public List<(string Token, float Probability)[]> FillMask(BridgeTowerForMaskedLM model, Image image, string text, int k = 5)
    {
        int maskId = Tokenizer.MaskId ?? throw new InvalidOperationException("the tokenizer has no mask token");
        var (ids, mask) = EncodeTexts([text]);
        var preds = model.FillMask(ids, mask, EncodeImages([image]), maskId, k);
        return preds.OrderBy(p => p.Key)
            .Select(p => p.Value.Select(t => (Tokenizer.Decode([t.TokenId]), t.Probability)).ToArray()).ToList();
    }

    /// <summary>Top-k answers to a question about an image.</summary>
    public AnswerPrediction[] AnswerQuestion(BridgeTowerForVqa model, Image image, string question, int k = 5)
    {
        var (ids, mask) = EncodeTexts([question]);
        return model.AnswerQuestion(ids, mask, EncodeImages([image]), k);
    }
}
