// A BERT WordPiece vocabulary fitted to a caption corpus, for BLIP (Li et al., arXiv 2201.12086, which uses BERT's
// WordPiece tokenizer with an added [DEC] token as the decoder's bos). The world's language is closed, so every
// word and punctuation mark of the corpus gets its own entry and nothing is split into pieces; the special tokens sit
// at fixed ids (BLIP's layout in miniature: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, [DEC] 5, [ENC] 6).
// Saved as HF files (vocab.txt, tokenizer_config.json, special_tokens_map.json) that AutoTokenizer and HF's
// BertTokenizer read.
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Tokenizers;

namespace Vlm.Training.CapFilt;

public static class WorldWordPiece
{
    public static readonly string[] Specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"];
    public const int PadId = 0, UnkId = 1, ClsId = 2, SepId = 3, MaskId = 4, DecId = 5, EncId = 6;

    /// <summary>Every distinct basic token (lower-cased, punctuation split off, as BERT's BasicTokenizer does) of
    /// <paramref name="texts"/>, in ordinal order after the specials. Deterministic for a given corpus.</summary>
    public static List<string> BuildVocab(IEnumerable<string> texts)
    {
        var words = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var t in texts)
        {
            var sb = new StringBuilder();
            foreach (char ch in t.ToLowerInvariant())
            {
                if (char.IsWhiteSpace(ch)) { Flush(); continue; }
                if (BertTokenizer.IsPunctuation(ch)) { Flush(); words.Add(ch.ToString()); continue; }
                sb.Append(ch);
            }
            Flush();

            void Flush() { if (sb.Length > 0) { words.Add(sb.ToString()); sb.Clear(); } }
        }
        return [.. Specials, .. words.Where(w => !Specials.Contains(w))];
    }

    /// <summary>Writes the tokenizer files to <paramref name="dir"/>; returns the vocabulary size.</summary>
    public static int TrainAndSave(IEnumerable<string> texts, string dir, int modelMaxLength = 64)
    {
        var vocab = BuildVocab(texts);
        Directory.CreateDirectory(dir);
        var utf8 = new UTF8Encoding(false);
        File.WriteAllText(Path.Combine(dir, "vocab.txt"), string.Join('\n', vocab) + "\n", utf8);
        var map = new JsonObject
        {
            ["unk_token"] = "[UNK]", ["sep_token"] = "[SEP]", ["pad_token"] = "[PAD]", ["cls_token"] = "[CLS]",
            ["mask_token"] = "[MASK]", ["bos_token"] = "[DEC]", ["additional_special_tokens"] = new JsonArray("[ENC]"),
        };
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), map.ToJsonString(), utf8);
        var cfg = (JsonObject)map.DeepClone();
        cfg["tokenizer_class"] = "BertTokenizer";
        cfg["do_lower_case"] = true;
        cfg["model_max_length"] = modelMaxLength;
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), utf8);
        return vocab.Count;
    }

    public static readonly string[] Files = ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"];
}
