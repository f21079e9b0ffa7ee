using System.Text;
using BenchmarkDotNet.Attributes;
using Vlm.Tokenizers;

namespace Vlm.Benchmarks;

/// <summary>
/// Tokenizer throughput on 1 MiB of text: byte-level BPE (RoBERTa fixture vocabulary when the fixtures are found,
/// else a BPE trained here) with a cold and a warm word cache, and BERT WordPiece (uncased fixture vocabulary, or
/// skipped). Run: <c>dotnet run -c Release --project benchmarks/Vlm.Benchmarks -- --filter '*Tokenizer*'</c>.
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private string _text = "";
    private string _fixtures = "";
    private TokenizerBase _warm = null!;
    private TokenizerBase? _bert;
    private TokenizerBase _cold = null!;

    [GlobalSetup]
    public void Setup()
    {
        // ~1 MiB of English-like text with many distinct words (so the BPE cache matters)
        var rng = new Random(1);
        string[] syll = ["ka", "lo", "mi", "tra", "pel", "ou", "sen", "dar", "vi", "qu", "ing", "tion", "er", "st", "the", "and"];
        var sb = new StringBuilder();
        while (sb.Length < 1 << 20)
        {
            sb.Append(rng.Next(12) == 0 ? ", " : " ");
            int n = rng.Next(1, 5);
            for (int i = 0; i < n; i++) sb.Append(syll[rng.Next(syll.Length)]);
            if (rng.Next(15) == 0) sb.Append(". The ").Append(rng.Next(1000));
        }
        _text = sb.ToString();
        _fixtures = FindFixtures();
        _warm = MakeBpe();
        _warm.Encode(_text, addSpecialTokens: false);
        var bertDir = Path.Combine(_fixtures, "tokenizers", "bert_uncased");
        _bert = Directory.Exists(bertDir) ? AutoTokenizer.FromFolder(bertDir) : null;
    }

    private TokenizerBase MakeBpe()
    {
        var dir = Path.Combine(_fixtures, "tokenizers", "roberta");
        if (Directory.Exists(dir)) return AutoTokenizer.FromFolder(dir);
        return BpeTrainer.Train(_text.Split('.').Take(2000), 2000, 2, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
            .ToTokenizer(new SpecialTokens { Bos = "<s>", Cls = "<s>", Eos = "</s>", Sep = "</s>", Pad = "<pad>", Unk = "<unk>", Mask = "<mask>" });
    }

    private static string FindFixtures()
    {
        var env = Environment.GetEnvironmentVariable("VLM_FIXTURES");
        if (!string.IsNullOrEmpty(env)) return env;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Vlm.slnx"))) return Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "fixtures"));
        }
        return "";
    }

    [IterationSetup(Target = nameof(BpeEncodeColdCache1MiB))]
    public void NewBpe() => _cold = MakeBpe();

    /// <summary>Every distinct word runs BPE once (fresh tokenizer per iteration).</summary>
    [Benchmark]
    public int BpeEncodeColdCache1MiB() => _cold.Encode(_text, addSpecialTokens: false).Length;

    [Benchmark(Baseline = true)]
    public int BpeEncodeWarmCache1MiB() => _warm.Encode(_text, addSpecialTokens: false).Length;

    [Benchmark]
    public int BertEncode1MiB() => _bert?.Encode(_text, addSpecialTokens: false).Length ?? 0;

    [Benchmark]
    public int BpeEncodeThenDecode1MiB() => _warm.Decode(_warm.Encode(_text, addSpecialTokens: false).Ids).Length;
}
