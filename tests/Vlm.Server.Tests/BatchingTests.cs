using Vlm.Models.BridgeTower;
using Vlm.Vision;
using Xunit.Abstractions;

namespace Vlm.Server.Tests;

/// <summary>Concurrent requests share one padded forward pass, and each gets what it would have got alone.</summary>
[Collection(ServerCollection.Name)]
public sealed class BatchingTests(ModelFixture fx, ITestOutputHelper output)
{
    private static readonly string[] Texts =
        ["a red circle", "two small blue squares next to a green cross", "yes", "a white diamond above a <mask> star", "red", "three shapes on a noisy background"];

    [Fact]
    public async Task Batched_results_equal_unbatched_ones()
    {
        // Six requests, a batch of six, a window long enough that all of them arrive before it closes.
        await using var s = await ModelFixture.StartAsync(fx.Options(o => o with { MaxBatch = 6, BatchWindowMs = 5000 }));
        var pngs = Enumerable.Range(0, 6).Select(i => Running.B64(File.ReadAllBytes(fx.Tiny.ImagePath(i % 5)))).ToArray();
        var itm = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => s.PostJson("/v1/itm", new { image = pngs[i], text = Texts[i] })));
        var vqa = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => s.PostJson("/v1/vqa", new { image = pngs[i], question = Texts[i], top_k = 4 })));
        var emb = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => s.PostJson("/v1/embed", new { text = Texts[i] })));
        var masked = Enumerable.Range(0, 6).Select(i => Texts[i].Contains("<mask>") ? Texts[i] : Texts[i] + " <mask>").ToArray();
        var fill = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => s.PostJson("/v1/fill-mask", new { image = pngs[i], text = masked[i], top_k = 3 })));

        var metrics = s.Server.Engine.Metrics;
        foreach (var kind in new[] { "itm", "vqa", "embed-text", "fill-mask" })
            Assert.Equal((1L, 6.0), metrics.BatchTotals(kind));   // one forward of six

        var d = fx.Direct;
        for (int i = 0; i < 6; i++)
        {
            var img = ImageDecoder.Decode(fx.Tiny.ImagePath(i % 5)).ToRgb();
            Assert.True(itm[i].Status == 200, itm[i].Raw);
            var want = d.Processor.ItmScores(d.Itm, img, [Texts[i]])[0];
            Assert.Equal(want.MatchProbability, (float)itm[i].Body!["score"]!, 1e-5f);
            Assert.Equal(want.MatchLogit, (float)itm[i].Body!["logits"]![1]!, 1e-4f);

            var wantVqa = d.Processor.AnswerQuestion(d.Vqa, img, Texts[i], 4);
            var gotVqa = vqa[i].Body!["answers"]!.AsArray();
            for (int k = 0; k < 4; k++)
            {
                Assert.Equal(wantVqa[k].Answer, (string?)gotVqa[k]!["answer"]);
                Assert.Equal(wantVqa[k].Score, (float)gotVqa[k]!["probability"]!, 1e-5f);
            }

            var (ids, mask) = d.Processor.EncodeTexts([Texts[i]]);
            var wantEmb = d.Contrastive.EmbedTexts(ids, mask).ToArray();
            var gotEmb = emb[i].Body!["text_embedding"]!.AsArray().Select(v => (float)v!).ToArray();
            for (int k = 0; k < wantEmb.Length; k++) Assert.Equal(wantEmb[k], gotEmb[k], 1e-5f);

            var wantFill = d.Processor.FillMask(d.Mlm, img, masked[i], 3)[0];
            var gotFill = fill[i].Body!["predictions"]!.AsArray();
            for (int k = 0; k < 3; k++)
            {
                Assert.Equal(wantFill[k].Token, (string?)gotFill[k]!["token"]);
                Assert.Equal(wantFill[k].Probability, (float)gotFill[k]!["score"]!, 1e-5f);
            }
        }
        output.WriteLine($"itm batch of 6 vs alone: max |Δp| checked at 1e-5 over {Texts.Length} pairs of lengths {string.Join(",", Texts.Select(t => d.Processor.Tokenizer.Encode(t).Ids.Length))}");
    }
}
