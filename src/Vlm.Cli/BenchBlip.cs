using System.Diagnostics;
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Nn;

namespace Vlm.Cli;

/// <summary>blip_base_caption_b1: BlipForConditionalGeneration at BLIP-base size (ViT-B/16 at 384 px = 577 tokens,
/// BERT-base decoder: 12 layers, 768, 12 heads, cross-attention to the image), random weights, one image, greedy
/// decoding of 20 tokens with the KV cache (no stop token). Three rows: the image encoding (vision forward), the
/// first decoder step (which also projects the 577 image states to cross-attention keys/values in every layer), and
/// the median of the 19 later cached steps; plus the whole caption (encode + 20 steps).</summary>
public static class BenchBlip
{
    public static IEnumerable<BenchCase> Cases()
    {
        yield return new BenchCase("blip_base_caption_b1", "BLIP-base captioning (ViT-B/16 384px + BERT-base decoder), B1, greedy 20 tokens: encode / first step / cached step / total", Run);
    }

    public static BlipConfig BaseConfig() => new()
    {
        TextConfig = new BlipTextConfig { NumAttentionHeads = 12 },   // BERT-base; HF's BlipTextConfig default is 8 heads
        VisionConfig = new BlipVisionConfig(),                         // ViT-B/16, 384 px
    };

    private static IEnumerable<BenchResult> Run(BenchOptions o)
    {
        var c = BaseConfig();
        var vb = VarBuilder.Init(new Rng(0));
        var model = new BlipForConditionalGeneration(vb, c);
        vb.Finish();
        model.Eval();
        var pixels = Tensor.Randn([1, 3, 384, 384], new Rng(1));
        const int tokens = 20;
        var encode = new List<double>(); var first = new List<double>(); var later = new List<double>(); var total = new List<double>();
        using (Tensor.Inference())
        {
            for (int rep = 0; rep < o.Reps + 2; rep++)
            {
                long t0 = Stopwatch.GetTimestamp();
                var image = model.Vision.Forward(pixels);                                   // (1, 577, 768)
                double enc = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                using var session = new BlipDecoderSession(model.TextDecoder, image, null);
                var ids = new List<long> { c.TextConfig.BosTokenId };
                var steps = new double[tokens];
                for (int s = 0; s < tokens; s++)
                {
                    long ts = Stopwatch.GetTimestamp();
                    var input = s == 0 ? Tensor.FromArray(new long[] { ids[0] }, 1, 1) : Tensor.FromArray(new long[] { ids[^1] }, 1, 1);
                    using var mask = Tensor.Ones(1, ids.Count);
                    using var logits = session.Step(input, mask);                            // (1, V)
                    using var next = logits.ArgMax(1);
                    ids.Add(next.ToInt64Array()[0]);                                         // greedy, no stop
                    steps[s] = Stopwatch.GetElapsedTime(ts).TotalMilliseconds;
                }
                double all = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                image.Dispose();
                if (rep < 2) continue;                                                       // warm-up
                encode.Add(enc); first.Add(steps[0]); later.AddRange(steps.Skip(1)); total.Add(all);
            }
        }
        string shape = "384px 577tok, 20 tok";
        yield return new BenchResult("blip_base_caption_b1", "vlm:encode", shape, o.Threads, 0, Bench.Median(encode), Bench.PeakMb());
        yield return new BenchResult("blip_base_caption_b1", "vlm:first_step", shape, o.Threads, 0, Bench.Median(first), Bench.PeakMb());
        yield return new BenchResult("blip_base_caption_b1", "vlm:cached_step", shape, o.Threads, 0, Bench.Median(later), Bench.PeakMb());
        yield return new BenchResult("blip_base_caption_b1", "vlm:total", shape, o.Threads, 0, Bench.Median(total), Bench.PeakMb());
    }
}
