namespace Vlm.Server.Tests;

/// <summary>The queue/worker mechanics on their own, with a batch function the test controls.</summary>
public sealed class MicroBatcherTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Waiting_requests_are_served_together_in_order()
    {
        var sizes = new List<int>();
        using var gate = new ManualResetEventSlim(false);
        var metrics = new Metrics();
        using var b = new MicroBatcher<int, int>("t", xs => { gate.Wait(); lock (sizes) sizes.Add(xs.Count); return xs.Select(x => x * 10).ToArray(); },
            maxBatch: 4, capacity: 16, window: TimeSpan.Zero, metrics);
        var first = b.SubmitAsync(0, Long, default);              // taken alone, held at the gate
        while (b.QueueDepth != 0) await Task.Delay(1);
        await Task.Delay(50);
        var rest = Enumerable.Range(1, 6).Select(i => b.SubmitAsync(i, Long, default)).ToList();
        while (b.QueueDepth != 6) await Task.Delay(1);
        gate.Set();
        Assert.Equal(0, await first);
        var got = await Task.WhenAll(rest);
        Assert.Equal(new[] { 10, 20, 30, 40, 50, 60 }, got);
        Assert.Equal(new[] { 1, 4, 2 }, sizes);
        Assert.Equal((3, 7.0), metrics.BatchTotals("t"));
    }

    [Fact]
    public async Task A_full_queue_is_503_and_a_slow_result_is_504()
    {
        using var gate = new ManualResetEventSlim(false);
        var metrics = new Metrics();
        using var b = new MicroBatcher<int, int>("t", xs => { gate.Wait(); return xs.ToArray(); }, maxBatch: 1, capacity: 1, window: TimeSpan.Zero, metrics);
        var running = b.SubmitAsync(1, Long, default);
        while (b.QueueDepth != 0) await Task.Delay(1);
        var queued = b.SubmitAsync(2, TimeSpan.FromMilliseconds(50), default);
        var full = await Assert.ThrowsAsync<ApiException>(() => b.SubmitAsync(3, Long, default));
        Assert.Equal(503, full.Status);
        Assert.Contains("queue is full", full.Message);
        var late = await Assert.ThrowsAsync<ApiException>(() => queued);
        Assert.Equal(504, late.Status);
        gate.Set();
        Assert.Equal(1, await running);
        // The abandoned request is skipped, not computed; the queue serves new work.
        Assert.Equal(4, await b.SubmitAsync(4, Long, default));
        Assert.Contains("vlm_queue_rejected_total{kind=\"t\"} 1", metrics.Render());
        Assert.Contains("vlm_request_timeouts_total{kind=\"t\"} 1", metrics.Render());
    }

    [Fact]
    public async Task A_failing_input_fails_alone()
    {
        using var gate = new ManualResetEventSlim(false);
        using var b = new MicroBatcher<int, int>("t", xs =>
        {
            gate.Wait();
            if (xs.Contains(13)) throw new InvalidOperationException("unlucky");
            return xs.Select(x => -x).ToArray();
        }, maxBatch: 8, capacity: 16, window: TimeSpan.FromMilliseconds(500), new Metrics());
        var tasks = new[] { 1, 13, 2 }.Select(x => b.SubmitAsync(x, Long, default)).ToList();
        gate.Set();
        Assert.Equal(-1, await tasks[0]);
        Assert.Equal(-2, await tasks[2]);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => tasks[1]);
        Assert.Equal("unlucky", e.Message);
    }
}
