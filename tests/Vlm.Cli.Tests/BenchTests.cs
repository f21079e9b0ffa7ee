using System.Text.Json;
using Vlm.Cli;

namespace Vlm.Cli.Tests;

/// <summary>`vlm bench` plumbing (the figures themselves are measured, never asserted).</summary>
public class BenchTests
{
    [Fact]
    public void ToJson_HasTheFieldsTorchBenchUses()
    {
        var line = Bench.ToJson(new BenchResult("gemm", "managed", "1576x768x768", 2, 123.456, 7.891234, 55.24));
        using var doc = JsonDocument.Parse(line);
        var r = doc.RootElement;
        Assert.Equal("gemm", r.GetProperty("name").GetString());
        Assert.Equal("managed", r.GetProperty("backend").GetString());
        Assert.Equal("1576x768x768", r.GetProperty("shape").GetString());
        Assert.Equal(2, r.GetProperty("threads").GetInt32());
        Assert.Equal(123.46, r.GetProperty("gflops").GetDouble());
        Assert.Equal(7.891, r.GetProperty("ms").GetDouble());
        Assert.Equal(55.2, r.GetProperty("peak_mb").GetDouble());
        Assert.DoesNotContain('\n', line);
    }

    [Fact]
    public void Registry_HasGemmAndAttention_AndRejectsDuplicates()
    {
        Assert.Contains(Bench.Cases, c => c.Name == "gemm");
        Assert.Contains(Bench.Cases, c => c.Name == "attention");
        Assert.Throws<ArgumentException>(() => Bench.Register(new BenchCase("gemm", "dup", _ => [])));
    }

    [Fact]
    public void MedianMsInterleaved_RunsEveryVariantWarmupPlusReps()
    {
        int a = 0, b = 0;
        var ms = Bench.MedianMsInterleaved([() => a++, () => b++], 5);
        Assert.Equal(2, ms.Length);
        Assert.Equal(7, a);
        Assert.Equal(7, b);
        Assert.All(ms, t => Assert.True(t >= 0));
    }

    [Fact]
    public void UnknownFilter_ExitsWithUsageError()
    {
        var root = new System.CommandLine.RootCommand();
        root.Subcommands.Add(Bench.Build());
        var err = new StringWriter();
        var saved = Console.Error;
        Console.SetError(err);
        try
        {
            Assert.Equal(2, root.Parse(["bench", "--filter", "no-such-benchmark"]).Invoke());
        }
        finally { Console.SetError(saved); }
        Assert.Contains("no benchmark matches", err.ToString());
    }
}
