using Vlm.Training.Pipeline;
using Vlm.Training.Plot;

namespace Vlm.Training.Tests.Pipeline;

public class PipelineTests
{
    [Fact]
    public void PrefetcherKeepsInputOrderWithManyWorkers()
    {
        var items = Enumerable.Range(0, 200).ToList();
        var rnd = new Random(1);
        var delays = items.Select(_ => rnd.Next(0, 3)).ToArray();
        var outp = new Prefetcher<int, int>(items, i => { Thread.Sleep(delays[i]); return i * i; }, workers: 3, depth: 5).ToList();
        Assert.Equal(items.Select(i => i * i), outp);
    }

    [Fact]
    public void PrefetcherStaysWithinItsWindow()
    {
        int produced = 0;
        var p = new Prefetcher<int, int>(Enumerable.Range(0, 100).ToList(), i => { Interlocked.Increment(ref produced); return i; }, workers: 2, depth: 4);
        using var e = p.GetEnumerator();
        Assert.True(e.MoveNext());
        Thread.Sleep(100);
        // One consumed (its slot released) + at most `depth` ahead.
        Assert.InRange(Volatile.Read(ref produced), 1, 5);
    }

    [Fact]
    public void PrefetcherSurfacesProducerErrorsAtTheFailingItem()
    {
        var p = new Prefetcher<int, int>(Enumerable.Range(0, 10).ToList(), i => i == 6 ? throw new InvalidDataException("bad item 6") : i, workers: 2);
        var seen = new List<int>();
        var ex = Assert.Throws<InvalidDataException>(() => { foreach (var v in p) seen.Add(v); });
        Assert.Equal("bad item 6", ex.Message);
        Assert.Equal(Enumerable.Range(0, 6), seen);
    }

    [Fact]
    public void ProgressBarWritesRateAndMetricsWhenRedirected()
    {
        var sw = new StringWriter();
        using (var bar = new ProgressBar("train", 10, "step", sw))
            for (int i = 1; i <= 10; i++) bar.Report(i, $"loss {1.0 / i:F2}");
        var text = sw.ToString();
        Assert.Contains("train [########################] 10/10", text);
        Assert.Contains("loss 0.10", text);
    }

    [Fact]
    public void LinePlotDrawsEachSeriesInItsColour()
    {
        var s1 = new Series("loss", Enumerable.Range(0, 50).Select(i => ((double)i, 3.0 * Math.Exp(-i / 10.0))).ToList(), (200, 30, 30));
        var s2 = new Series("acc", Enumerable.Range(0, 50).Select(i => ((double)i, i / 50.0)).ToList(), (30, 30, 200));
        var (rgb, w, h) = LinePlot.Render("training", [s1, s2]);
        Assert.Equal(w * h * 3, rgb.Length);
        int red = 0, blue = 0;
        for (int i = 0; i < rgb.Length; i += 3)
        {
            if (rgb[i] == 200 && rgb[i + 1] == 30 && rgb[i + 2] == 30) red++;
            if (rgb[i] == 30 && rgb[i + 1] == 30 && rgb[i + 2] == 200) blue++;
        }
        Assert.True(red > 200, $"red pixels {red}");
        Assert.True(blue > 200, $"blue pixels {blue}");
    }
}
