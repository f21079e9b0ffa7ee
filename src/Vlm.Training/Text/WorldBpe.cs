// Byte-level BPE training (Sennrich et al. 2016, with GPT-2's byte alphabet and pre-tokenizer) for a tokenizer
// fitted to a caption corpus, saved as HF RoBERTa files (vocab.json, merges.txt, tokenizer_config.json,
// special_tokens_map.json) that AutoTokenizer.FromFolder and HF's RobertaTokenizer read.
// A deliberately small trainer for small corpora (the pair counts are recomputed each merge); the library-wide
// trainer is Vlm.Tokenizers' BpeTrainer once it lands.
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
    public static int TrainAndSave(IEnumerable<string> texts, string dir, int vocabSize = 1000, int modelMaxLength = 64)
    {
        var freq = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var t in texts)
            foreach (var w in Gpt2PreTokenizer.Split(t))
            {
                var key = ByteLevel.Encode(System.Text.Encoding.UTF8.GetBytes(w));
                freq[key] = freq.GetValueOrDefault(key) + 1;
            }
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in Specials) vocab[s] = vocab.Count;
        for (int b = 0; b < 256; b++) vocab.TryAdd(ByteLevel.ByteToChar[b].ToString(), vocab.Count);
        var words = freq.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (syms: kv.Key.Select(c => c.ToString()).ToList(), f: kv.Value)).ToList();
        var merges = new List<(string, string)>();
        while (vocab.Count < vocabSize)
        {
            var counts = new Dictionary<(string, string), long>();
            foreach (var (syms, f) in words)
                for (int i = 0; i + 1 < syms.Count; i++)
                    counts[(syms[i], syms[i + 1])] = counts.GetValueOrDefault((syms[i], syms[i + 1])) + f;
            if (counts.Count == 0) break;
            var best = counts.OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2) break;
            var (l, r) = best.Key;
            merges.Add((l, r));
            vocab.TryAdd(l + r, vocab.Count);
            foreach (var (syms, _) in words)
                for (int i = 0; i + 1 < syms.Count; i++)
                    if (syms[i] == l && syms[i + 1] == r)
                    {
                        syms[i] = l + r;
                        syms.RemoveAt(i + 1);
                    }
        }
        Save(dir, vocab, merges, modelMaxLength);
        return vocab.Count;
    }

    private static void Save(string dir, Dictionary<string, int> vocab, List<(string, string)> merges, int modelMaxLength)
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
