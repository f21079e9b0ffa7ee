using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Vlm.Server;

/// <summary>What a closed-loop load run measured: latency percentiles over successful requests, throughput over all.</summary>
public sealed record LoadResult(int Requests, int Errors, double Seconds, double P50Ms, double P99Ms, double MaxMs, double RequestsPerSecond, string? FirstError)
{
    public override string ToString() =>
        $"{Requests} requests in {Seconds:F1} s: {RequestsPerSecond:F1} req/s, p50 {P50Ms:F1} ms, p99 {P99Ms:F1} ms, max {MaxMs:F1} ms, {Errors} errors" +
        (FirstError is null ? "" : $" (first: {FirstError})");
}

/// <summary>
/// Closed-loop load generator: <c>clients</c> concurrent loops each POST a request, wait for the answer, and post the
/// next until the duration ends. Used by the load test and by <c>vlm serve --load-test</c>.
/// </summary>
public static class LoadTest
{
    /// <summary>A JSON body for /v1/itm (or /v1/attention) on built-in demo image 0.</summary>
    public static byte[] DemoItmBody(string text = "a small red circle") =>
        JsonSerializer.SerializeToUtf8Bytes(new { image = Convert.ToBase64String(DemoImages.All[0].Png), text });

    public static async Task<LoadResult> RunAsync(Uri baseAddress, string path, byte[] jsonBody, int clients, TimeSpan duration, CancellationToken ct = default)
    {
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = Math.Max(1, clients), PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        using var http = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(2) };
        var latencies = new List<double>[clients];
        int errors = 0;
        string? firstError = null;
        var sw = Stopwatch.StartNew();
        var end = duration;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
        {
            var mine = latencies[c] = new List<double>();
            while (sw.Elapsed < end && !ct.IsCancellationRequested)
            {
                long t0 = Stopwatch.GetTimestamp();
                try
                {
                    using var content = new ByteArrayContent(jsonBody);
                    content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                    using var resp = await http.PostAsync(path, content, ct);
                    var body = await resp.Content.ReadAsStringAsync(ct);
                    if (resp.IsSuccessStatusCode) mine.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    else
                    {
                        Interlocked.Increment(ref errors);
                        Interlocked.CompareExchange(ref firstError, $"{(int)resp.StatusCode} {body}", null);
                    }
                }
                catch (HttpRequestException e)
                {
                    Interlocked.Increment(ref errors);
                    Interlocked.CompareExchange(ref firstError, e.Message, null);
                }
            }
        }));
        double secs = sw.Elapsed.TotalSeconds;
        var all = latencies.SelectMany(l => l).OrderBy(x => x).ToArray();
        double Pct(double q) => all.Length == 0 ? double.NaN : all[Math.Min(all.Length - 1, (int)Math.Ceiling(q * all.Length) - 1)];
        return new LoadResult(all.Length + errors, errors, secs, Pct(0.5), Pct(0.99), all.Length == 0 ? double.NaN : all[^1], (all.Length + errors) / secs, firstError);
    }
}
