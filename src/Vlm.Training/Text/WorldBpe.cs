// Byte-level BPE training (Sennrich et al. 2016, with GPT-2's byte alphabet and pre-tokenizer) for a tokenizer
// fitted to a caption corpus, saved as HF RoBERTa files (vocab.json, merges.txt, tokenizer_config.json,
// special_tokens_map.json) that AutoTokenizer.FromFolder and HF's RobertaTokenizer read.
// Training is Vlm.Tokenizers' BpeTrainer; this file fixes RoBERTa's special tokens and writes the HF files.
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Tokenizers;

namespace Vlm.Training.Text;

public static class WorldBpe
{
    /// <summary>RoBERTa's special tokens at RoBERTa's ids (pad = 1, as BridgeTower's text config expects).</summary>
    public static readonly string[] Specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

    /// <summary>Trains on <paramref name="texts"/> until <paramref name="vocabSize"/> entries or no pair occurs twice,
    /// writes the tokenizer files to <paramref name="dir"/> and returns the vocabulary size. Deterministic: ties
    /// between equally frequent pairs go to the ordinally smallest (left, right).</summary>
    /// <param name="additionalSpecials">extra special tokens after RoBERTa's (e.g. BLIP's [DEC], [ENC]), saved as
    /// additional_special_tokens so they are never split and are skipped when decoding</param>
    public static int TrainAndSave(IEnumerable<string> texts, string dir, int vocabSize = 1000, int modelMaxLength = 64, IReadOnlyList<string>? additionalSpecials = null)
    {
        var extra = additionalSpecials ?? [];
        var model = BpeTrainer.Train(texts, vocabSize, minFrequency: 2, specialTokens: [.. Specials, .. extra]);
        Save(dir, model.Vocab, model.Merges, modelMaxLength, extra);
        return model.Vocab.Count;
    }

    private static void Save(string dir, Dictionary<string, int> vocab, List<(string, string)> merges, int modelMaxLength, IReadOnlyList<string> extra)
    {
        Directory.CreateDirectory(dir);
        var opts = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var v = new JsonObject();
        foreach (var kv in vocab.OrderBy(kv => kv.Value)) v[kv.Key] = kv.Value;
        var utf8 = new UTF8Encoding(false);
        File.WriteAllText(Path.Combine(dir, "vocab.json"), v.ToJsonString(opts), utf8);
        var sb = new StringBuilder("#version: 0.2\n");
        foreach (var (l, r) in merges) sb.Append(l).Append(' ').Append(r).Append('\n');
        File.WriteAllText(Path.Combine(dir, "merges.txt"), sb.ToString(), utf8);
        var map = new JsonObject
        {
            ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["unk_token"] = "<unk>", ["sep_token"] = "</s>",
            ["pad_token"] = "<pad>", ["cls_token"] = "<s>", ["mask_token"] = "<mask>",
        };
        if (extra.Count > 0) map["additional_special_tokens"] = new JsonArray(extra.Select(x => (JsonNode)x).ToArray());
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), map.ToJsonString(opts), utf8);
        var cfg = (JsonObject)map.DeepClone();
        cfg["tokenizer_class"] = "RobertaTokenizer";
        cfg["add_prefix_space"] = false;
        cfg["model_max_length"] = modelMaxLength;
        cfg["clean_up_tokenization_spaces"] = false;
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString(opts), utf8);
    }

    /// <summary>The tokenizer files <see cref="TrainAndSave"/> writes (to copy into model folders).</summary>
    public static readonly string[] Files = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];
}
