using Xunit.Abstractions;

namespace Vlm.Server.Tests;

/// <summary>Eight closed-loop clients on loopback for a few seconds: every request must succeed. Latency and
/// throughput are printed, not asserted (timed asserts are flaky on a shared machine).</summary>
[Collection(ServerCollection.Name)]
public sealed class LoadTests(ModelFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task Eight_concurrent_clients_get_no_errors()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options(o => o with { MaxBatch = 8, QueueCapacity = 64 }));
        var body = LoadTest.DemoItmBody();
        var r = await LoadTest.RunAsync(s.Server.Address, "/v1/itm", body, clients: 8, TimeSpan.FromSeconds(5));
        var (batches, reqs) = s.Server.Engine.Metrics.BatchTotals("itm");
        output.WriteLine($"tiny random BridgeTower, POST /v1/itm, 8 clients: {r}; mean batch {reqs / Math.Max(1, batches):F2}");
        Assert.True(r.Errors == 0, r.FirstError);
        Assert.True(r.Requests > 8, $"only {r.Requests} requests completed");
        Assert.Equal(r.Requests, (int)reqs);                      // every request went through the batcher once
        Assert.True(batches < reqs, "concurrent clients never shared a batch");
    }
}
