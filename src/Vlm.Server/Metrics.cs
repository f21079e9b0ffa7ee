using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Vlm.Server;

/// <summary>
/// Counters for the Prometheus text format (exposition format 0.0.4): requests by route and status, a latency
/// histogram per route, batch sizes and queue depth per task kind, rejections and timeouts. Hand-written because
/// the service takes no packages beyond the shared framework; every update is lock-free or a short lock.
/// </summary>
public sealed class Metrics
{
    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    private static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

    private readonly ConcurrentDictionary<(string Route, int Status), long[]> _requests = new();
    private readonly ConcurrentDictionary<string, Histogram> _latency = new();
    private readonly ConcurrentDictionary<string, Histogram> _batch = new();
    private readonly ConcurrentDictionary<string, long[]> _rejected = new();
    private readonly ConcurrentDictionary<string, long[]> _timeouts = new();
    private readonly ConcurrentDictionary<string, Func<int>> _queueDepth = new();

    private sealed class Histogram(double[] bounds)
    {
        public readonly double[] Bounds = bounds;
        public readonly long[] Counts = new long[bounds.Length + 1];   // last = +Inf
        public double Sum;
        public long Count;

        public void Observe(double v)
        {
            lock (this)
            {
                int i = 0;
                while (i < Bounds.Length && v > Bounds[i]) i++;
                Counts[i]++;
                Sum += v;
                Count++;
            }
        }
    }

    public void Request(string route, int status, double seconds)
    {
        Interlocked.Increment(ref _requests.GetOrAdd((route, status), _ => new long[1])[0]);
        _latency.GetOrAdd(route, _ => new Histogram(LatencyBuckets)).Observe(seconds);
    }

    public void Batch(string kind, int size) => _batch.GetOrAdd(kind, _ => new Histogram(BatchBuckets)).Observe(size);
    public void Rejected(string kind) => Interlocked.Increment(ref _rejected.GetOrAdd(kind, _ => new long[1])[0]);
    public void Timeout(string kind) => Interlocked.Increment(ref _timeouts.GetOrAdd(kind, _ => new long[1])[0]);
    public void RegisterQueue(string kind, Func<int> depth) => _queueDepth[kind] = depth;

    /// <summary>How many batches of exactly <paramref name="size"/> requests ran for <paramref name="kind"/>
    /// (≤ size bucket minus the one below; exact for sizes on bucket bounds). For tests and the bench.</summary>
    public (long Batches, double Requests) BatchTotals(string kind)
    {
        if (!_batch.TryGetValue(kind, out var h)) return (0, 0);
        lock (h) return (h.Count, h.Sum);
    }

    public string Render()
    {
        var sb = new StringBuilder();
        static string Esc(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
        static string F(double v) => double.IsPositiveInfinity(v) ? "+Inf" : v.ToString("R", CultureInfo.InvariantCulture);

        sb.Append("# HELP vlm_http_requests_total HTTP requests by route and status.\n# TYPE vlm_http_requests_total counter\n");
        foreach (var ((route, status), c) in _requests.OrderBy(k => k.Key.Route, StringComparer.Ordinal).ThenBy(k => k.Key.Status))
            sb.Append($"vlm_http_requests_total{{endpoint=\"{Esc(route)}\",status=\"{status}\"}} {Interlocked.Read(ref c[0])}\n");

        void Hist(string name, string help, string label, ConcurrentDictionary<string, Histogram> hs)
        {
            sb.Append($"# HELP {name} {help}\n# TYPE {name} histogram\n");
            foreach (var (key, h) in hs.OrderBy(k => k.Key, StringComparer.Ordinal))
                lock (h)
                {
                    long cum = 0;
                    for (int i = 0; i <= h.Bounds.Length; i++)
                    {
                        cum += h.Counts[i];
                        var le = i < h.Bounds.Length ? F(h.Bounds[i]) : "+Inf";
                        sb.Append($"{name}_bucket{{{label}=\"{Esc(key)}\",le=\"{le}\"}} {cum}\n");
                    }
                    sb.Append($"{name}_sum{{{label}=\"{Esc(key)}\"}} {F(h.Sum)}\n");
                    sb.Append($"{name}_count{{{label}=\"{Esc(key)}\"}} {h.Count}\n");
                }
        }
        Hist("vlm_http_request_duration_seconds", "Time from request start to response, by route.", "endpoint", _latency);
        Hist("vlm_batch_size", "Requests served by one forward pass, by task kind.", "kind", _batch);

        sb.Append("# HELP vlm_queue_depth Requests waiting for a worker, by task kind.\n# TYPE vlm_queue_depth gauge\n");
        foreach (var (kind, depth) in _queueDepth.OrderBy(k => k.Key, StringComparer.Ordinal))
            sb.Append($"vlm_queue_depth{{kind=\"{Esc(kind)}\"}} {depth()}\n");
        sb.Append("# HELP vlm_queue_rejected_total Requests refused with 503 because the queue was full.\n# TYPE vlm_queue_rejected_total counter\n");
        foreach (var (kind, c) in _rejected.OrderBy(k => k.Key, StringComparer.Ordinal))
            sb.Append($"vlm_queue_rejected_total{{kind=\"{Esc(kind)}\"}} {Interlocked.Read(ref c[0])}\n");
        sb.Append("# HELP vlm_request_timeouts_total Requests answered 504 after --timeout-ms.\n# TYPE vlm_request_timeouts_total counter\n");
        foreach (var (kind, c) in _timeouts.OrderBy(k => k.Key, StringComparer.Ordinal))
            sb.Append($"vlm_request_timeouts_total{{kind=\"{Esc(kind)}\"}} {Interlocked.Read(ref c[0])}\n");
        return sb.ToString();
    }
}
