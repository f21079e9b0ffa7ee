using Vlm.Core;
using Vlm.Models.Generation;

namespace Vlm.Models.Tests.Generation;

/// <summary>A Markov "decoder": the next-token log-probabilities depend on the last token (a table) plus a small
/// term from the token before it, so a wrong cache reorder or a wrong prefix changes the result.</summary>
internal sealed class TableDecoder(float[][] table, float secondOrder = 0f) : IIncrementalDecoder
{
    private List<List<long>> _rows = new();
    public int Steps { get; private set; }
    public List<int> FedLengths { get; } = new();

    public int CachedLength => _rows.Count == 0 ? 0 : _rows[0].Count;

    public Tensor Step(Tensor newIds, Tensor attentionMask)
    {
        int b = newIds.Size(0), t = newIds.Size(1), v = table[0].Length;
        var ids = newIds.ToInt64Array();
        if (_rows.Count == 0) for (int i = 0; i < b; i++) _rows.Add(new List<long>());
        Assert.Equal(b, _rows.Count);
        Assert.Equal(CachedLength + t, attentionMask.Size(1));
        FedLengths.Add(t);
        Steps++;
        var o = new float[b * v];
        for (int i = 0; i < b; i++)
        {
            for (int j = 0; j < t; j++) _rows[i].Add(ids[i * t + j]);
            var h = _rows[i];
            var row = table[(int)h[^1]];
            for (int k = 0; k < v; k++) o[i * v + k] = row[k];
            if (h.Count >= 2) o[i * v + (int)(h[^2] % v)] += secondOrder;
        }
        return Tensor.FromArray(o, b, v);
    }

    public void Reset() => _rows = new();

    public void Reorder(int[] rows)
    {
        if (_rows.Count == 0) return;
        _rows = rows.Select(r => new List<long>(_rows[r])).ToList();
    }
}

public class GeneratorTests
{
    // vocab: 0 pad, 1 bos, 2 eos, 3 A, 4 B
    private static float[] Probs(params (int tok, double p)[] ps)
    {
        var r = Enumerable.Repeat(MathF.Log(1e-6f), 5).ToArray();
        foreach (var (t, p) in ps) r[t] = (float)Math.Log(p);
        return r;
    }

    private static float[][] LengthTable() =>
    [
        Probs((3, 0.5)), Probs((2, 0.4), (3, 0.35), (4, 0.25)), Probs((2, 0.9), (3, 0.1)),
        Probs((2, 0.9), (3, 0.05), (4, 0.05)), Probs((2, 0.9), (3, 0.05), (4, 0.05)),
    ];

    private static Tensor Bos(int b) => Tensor.FromArray(Enumerable.Repeat(1L, b).ToArray(), b, 1);

    private static GenerationOptions Opts(int beams = 1, float lp = 1f) =>
        new() { MaxNewTokens = 6, NumBeams = beams, LengthPenalty = lp, EosTokenIds = [2], PadTokenId = 0 };

    [Fact]
    public void Greedy_takes_the_argmax_stops_on_eos_and_pads_finished_rows()
    {
        // row 0 starts from bos (eos most likely at once), row 1 from A (A → eos).
        var prompt = Tensor.FromArray(new long[] { 1, 1, 1, 3 }, 2, 2);
        var r = Generator.Generate(new TableDecoder(LengthTable()), prompt, null, Opts());
        Assert.Equal(new long[] { 1, 1, 2, 1, 3, 2 }, r.Sequences.ToInt64Array());
        Assert.Single(r.Scores);
        // the raw logits are the scores when no processor is active
        Assert.Equal(LengthTable()[1], r.Scores[0].Narrow(0, 0, 1).Reshape(-1).ToArray());

        var three = Tensor.FromArray(new long[] { 1, 0, 3 }, 3, 1);  // row 1 starts from pad → A, A, ... never ends first
        var r3 = Generator.Generate(new TableDecoder(LengthTable()), three, null, Opts() with { MaxNewTokens = 3 });
        var ids = r3.Sequences.ToInt64Array();
        // every row has finished after 2 steps, so decoding stops before max_new_tokens
        Assert.Equal(new[] { 3, 3 }, r3.Sequences.ShapeArray());
        Assert.Equal(new long[] { 1, 2, 0 }, ids[0..3]);           // finished row padded with pad_token_id
        Assert.Equal(new long[] { 0, 3, 2 }, ids[3..6]);
        Assert.Equal(new long[] { 3, 2, 0 }, ids[6..9]);
        Assert.Equal(2, r3.Scores.Count);
    }

    [Fact]
    public void Beam_search_with_one_beam_equals_greedy()
    {
        var rng = new Rng(3);
        var table = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, 5).Select(_ => (float)rng.NextNormal()).ToArray()).ToArray();
        var prompt = Tensor.FromArray(new long[] { 1, 3, 4 }, 3, 1);
        foreach (var max in new[] { 1, 3, 8 })
        {
            var o = Opts() with { MaxNewTokens = max };
            var g = Generator.Generate(new TableDecoder(table, 0.3f), prompt, null, o);
            var b = Generator.GenerateBeamSearch(new TableDecoder(table, 0.3f), prompt, null, o);
            Assert.Equal(g.Sequences.ShapeArray(), b.Sequences.ShapeArray());
            Assert.Equal(g.Sequences.ToInt64Array(), b.Sequences.ToInt64Array());
        }
    }

    [Fact]
    public void Length_penalty_chooses_between_short_and_long_hypotheses()
    {
        // [bos, eos]: log .4 = −0.92 over 1 token; [bos, A, eos]: log .35 + log .9 = −1.16 over 2 tokens.
        var shortWins = Generator.Generate(new TableDecoder(LengthTable()), Bos(1), null, Opts(beams: 2, lp: 0f));
        Assert.Equal(new long[] { 1, 2 }, shortWins.Sequences.ToInt64Array());
        Assert.Equal(MathF.Log(0.4f), shortWins.SequenceScores![0], 4);
        var longWins = Generator.Generate(new TableDecoder(LengthTable()), Bos(1), null, Opts(beams: 2, lp: 1f));
        Assert.Equal(new long[] { 1, 3, 2 }, longWins.Sequences.ToInt64Array());
        Assert.Equal((MathF.Log(0.35f) + MathF.Log(0.9f)) / 2f, longWins.SequenceScores![0], 4);
    }

    [Fact]
    public void Beam_search_finds_a_better_sequence_than_greedy()
    {
        // greedy: bos → A (0.5) → eos (0.3); beam: bos → B (0.4) → eos (0.99) is more likely overall.
        float[][] t =
        [
            Probs((3, 0.5)), Probs((3, 0.5), (4, 0.4), (2, 0.1)), Probs((2, 1.0)),
            Probs((2, 0.3), (3, 0.35), (4, 0.35)), Probs((2, 0.99)),
        ];
        var o = Opts() with { MaxNewTokens = 2 };
        Assert.Equal(new long[] { 1, 3, 3 }, Generator.Generate(new TableDecoder(t), Bos(1), null, o).Sequences.ToInt64Array());
        var beam = Generator.Generate(new TableDecoder(t), Bos(1), null, o with { NumBeams = 3, LengthPenalty = 0f });
        Assert.Equal(new long[] { 1, 4, 2 }, beam.Sequences.ToInt64Array());
    }

    [Fact]
    public void Early_stopping_true_stops_once_num_beams_hypotheses_are_done()
    {
        var t = LengthTable();
        var d = new TableDecoder(t);
        var r = Generator.Generate(d, Bos(1), null, Opts(beams: 2, lp: 1f) with { EarlyStopping = EarlyStopping.True, MaxNewTokens = 20 });
        Assert.Equal(2, r.Scores.Count);   // step 1 finishes [bos,eos], step 2 finishes [bos,A,eos] and [bos,B,eos]
        var never = new TableDecoder(t);
        Generator.Generate(never, Bos(1), null, Opts(beams: 2, lp: 1f) with { EarlyStopping = EarlyStopping.Never, MaxNewTokens = 20 });
        Assert.True(never.Steps > 2, $"early_stopping=never should keep searching past the point early_stopping=True stops (ran {never.Steps} steps)");
    }

    [Fact]
    public void Cache_feeds_one_token_per_step_and_agrees_with_uncached_decoding()
    {
        var rng = new Rng(5);
        var table = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, 5).Select(_ => (float)rng.NextNormal()).ToArray()).ToArray();
        var prompt = Tensor.FromArray(new long[] { 1, 3, 4, 1 }, 2, 2);
        foreach (var o in new[] { Opts() with { MaxNewTokens = 5, EosTokenIds = [] }, Opts(beams: 3) with { MaxNewTokens = 5 },
                                  Opts() with { MaxNewTokens = 5, DoSample = true, TopK = 3, Seed = 9 } })
        {
            var cached = new TableDecoder(table, 0.7f);
            var a = Generator.Generate(cached, prompt, null, o);
            var b = Generator.Generate(new TableDecoder(table, 0.7f), prompt, null, o with { UseCache = false });
            Assert.Equal(a.Sequences.ToInt64Array(), b.Sequences.ToInt64Array());
            Assert.Equal(2, cached.FedLengths[0]);
            Assert.All(cached.FedLengths.Skip(1), n => Assert.Equal(1, n));
            Assert.Equal(a.Scores.Count, b.Scores.Count);
            for (int i = 0; i < a.Scores.Count; i++) Assert.Equal(a.Scores[i].ToArray(), b.Scores[i].ToArray());
        }
    }

    [Fact]
    public void Sampling_is_deterministic_given_the_seed_and_top_k_1_is_greedy()
    {
        var rng = new Rng(11);
        var table = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, 5).Select(_ => (float)rng.NextNormal() * 0.3f).ToArray()).ToArray();
        var prompt = Tensor.FromArray(new long[] { 1, 1, 1, 1 }, 4, 1);
        var o = Opts() with { MaxNewTokens = 12, DoSample = true, TopK = 0, EosTokenIds = [] };
        long[] Run(GenerationOptions x) => Generator.Generate(new TableDecoder(table), prompt, null, x).Sequences.ToInt64Array();
        Assert.Equal(Run(o with { Seed = 1 }), Run(o with { Seed = 1 }));
        var outs = Enumerable.Range(0, 6).Select(s => string.Join(",", Run(o with { Seed = (ulong)s }))).Distinct().Count();
        Assert.True(outs > 1, "different seeds should give different samples on a flat distribution");
        var greedy = Run(Opts() with { MaxNewTokens = 12, EosTokenIds = [] });
        Assert.Equal(greedy, Run(o with { TopK = 1, Seed = 4 }));
        Assert.Equal(greedy, Run(o with { TopP = 1e-4f, Seed = 4 }));
        Assert.Equal(greedy, Run(o with { Temperature = 1e-3f, Seed = 4 }));
    }

    [Fact]
    public void Min_length_and_repetition_penalty_act_like_hf_processors()
    {
        // without min length: [bos, eos]; min_new_tokens 2 forbids eos at the first two steps.
        var r = Generator.Generate(new TableDecoder(LengthTable()), Bos(1), null, Opts() with { MinNewTokens = 2 });
        var ids = r.Sequences.ToInt64Array();
        Assert.Equal(new long[] { 1, 3, 3, 2 }, ids);
        Assert.True(float.IsNegativeInfinity(r.Scores[0].ToArray()[2]));
        var r2 = Generator.Generate(new TableDecoder(LengthTable()), Bos(1), null, Opts() with { MinLength = 2 });
        Assert.Equal(new long[] { 1, 3, 2 }, r2.Sequences.ToInt64Array());

        var s = new float[] { 2f, -2f, 1f, 0.5f };
        LogitsProcessing.RepetitionPenalty(s, new long[] { 0, 1, 1 }, 2f);
        Assert.Equal(new float[] { 1f, -4f, 1f, 0.5f }, s);
    }

    [Fact]
    public void Top_k_and_top_p_filter_like_hf_warpers()
    {
        var s = new float[] { 1f, 3f, 2f, 3f, 0f };
        LogitsProcessing.TopK(s, 2);   // ties with the k-th value stay
        Assert.Equal(new[] { float.NegativeInfinity, 3f, float.NegativeInfinity, 3f, float.NegativeInfinity }, s);
        // probabilities .5 .3 .15 .05: top_p .7 keeps .5 and .3 (cumulative from the bottom .05, .2 ≤ .3 removed)
        var p = new[] { MathF.Log(0.15f), MathF.Log(0.5f), MathF.Log(0.05f), MathF.Log(0.3f) };
        LogitsProcessing.TopP(p, 0.7f);
        Assert.True(float.IsNegativeInfinity(p[0]) && float.IsNegativeInfinity(p[2]));
        Assert.False(float.IsNegativeInfinity(p[1]) || float.IsNegativeInfinity(p[3]));
    }

    [Fact]
    public void Bad_settings_are_rejected_with_clear_errors()
    {
        var d = new TableDecoder(LengthTable());
        Assert.Contains("num_beams", Assert.Throws<ArgumentException>(() => Generator.Generate(d, Bos(1), null, Opts(beams: 0))).Message);
        Assert.Contains("max length", Assert.Throws<ArgumentException>(() => Generator.Generate(d, Bos(1), null, Opts() with { MaxNewTokens = 0 })).Message);
        Assert.Contains("top_p", Assert.Throws<ArgumentException>(() => Generator.Generate(d, Bos(1), null, Opts() with { DoSample = true, TopP = 0f })).Message);
        Assert.Throws<NotSupportedException>(() => Generator.Generate(d, Bos(1), null, Opts(beams: 2) with { DoSample = true }));
    }
}

public class GenerationConfigFileTests
{
    [Fact]
    public void Reads_hf_fields_and_rejects_unsupported_settings()
    {
        var o = GenerationConfigFile.Load(Vlm.TestSupport.Fixtures.Path("blip_caption", "generation_config.json"));
        Assert.Equal(new[] { 2 }, o.EosTokenIds);
        Assert.Equal(0, o.PadTokenId);
        Assert.Equal(20, o.MaxLength);
        var b = GenerationConfigFile.FromJson("{\"num_beams\":4,\"length_penalty\":0.5,\"early_stopping\":\"never\",\"eos_token_id\":[3,5],\"top_p\":0.9,\"no_repeat_ngram_size\":0}");
        Assert.Equal(4, b.NumBeams);
        Assert.Equal(0.5f, b.LengthPenalty);
        Assert.Equal(EarlyStopping.Never, b.EarlyStopping);
        Assert.Equal(new[] { 3, 5 }, b.EosTokenIds);
        Assert.Contains("no_repeat_ngram_size", Assert.Throws<InvalidDataException>(() => GenerationConfigFile.FromJson("{\"no_repeat_ngram_size\":3}", "g.json")).Message);
        Assert.Contains("early_stopping", Assert.Throws<InvalidDataException>(() => GenerationConfigFile.FromJson("{\"early_stopping\":\"soon\"}")).Message);
    }
}
