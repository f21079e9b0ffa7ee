using System.Diagnostics;
using System.Text;

namespace Vlm.Core.Autograd;

/// <summary>
/// Opt-in per-op timing of the recorded forward and of backward (<c>VLM_PROFILE=1</c>), printed to stderr as a
/// table after each <see cref="Engine.Backward"/>. Forward time of an op is the wall time on the recording thread
/// since the previous op was recorded there (so it also counts the caller's glue between ops, e.g. views);
/// backward time is each node's rule plus the gradient accumulation it triggered. Off, it costs one static bool test.
/// </summary>
public static class Profiler
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("VLM_PROFILE") == "1";

    private static readonly object Gate = new();
    private static readonly Dictionary<string, (long ticks, int calls)> Forward = new();
    private static readonly Dictionary<string, (long ticks, int calls)> Backward = new();
    /// <summary>Per parallel region: core-time left idle (workers × wall − Σ busy), and workers × wall.</summary>
    private static readonly Dictionary<string, (long idle, long capacity, int calls)> Idle = new();
    [ThreadStatic] private static long _lastRecord;

    internal static void OnRecord(string name)
    {
        long now = Stopwatch.GetTimestamp();
        long last = _lastRecord;
        _lastRecord = now;
        if (last == 0) return;
        Add(Forward, name, now - last);
    }

    /// <summary>Starts forward attribution afresh (e.g. at the start of a training step).</summary>
    public static void MarkForwardStart() => _lastRecord = Stopwatch.GetTimestamp();

    internal static void AddBackward(string name, long ticks) => Add(Backward, name, ticks);

    /// <summary>Records a parallel region's join: <paramref name="busy"/> ticks each worker spent from the region's
    /// start to finishing its last piece (the rest of the region's wall time × workers is a core left idle).</summary>
    internal static void AddIdle(string name, long wall, ReadOnlySpan<long> busy)
    {
        long idle = 0;
        foreach (var b in busy) idle += Math.Max(0, wall - b);
        lock (Gate)
        {
            Idle.TryGetValue(name, out var v);
            Idle[name] = (v.idle + idle, v.capacity + wall * busy.Length, v.calls + 1);
        }
    }

    private static void Add(Dictionary<string, (long, int)> d, string name, long ticks)
    {
        lock (Gate)
        {
            d.TryGetValue(name, out var v);
            d[name] = (v.Item1 + ticks, v.Item2 + 1);
        }
    }

    /// <summary>Prints and clears both tables.</summary>
    public static void Report(long backwardTotalTicks)
    {
        var sb = new StringBuilder();
        lock (Gate)
        {
            Table(sb, "forward (recorded ops)", Forward, 0);
            Table(sb, "backward", Backward, backwardTotalTicks);
            if (Idle.Count > 0)
            {
                sb.AppendLine("VLM_PROFILE idle cores at parallel joins (core-ms idle / core-ms of the regions):");
                foreach (var (name, (idle, cap, calls)) in Idle.OrderByDescending(kv => kv.Value.capacity))
                    sb.AppendLine($"  {name,-32} {calls,6} calls {idle * 1000.0 / Stopwatch.Frequency,10:F1} of {cap * 1000.0 / Stopwatch.Frequency,8:F1} ms {100.0 * idle / Math.Max(1, cap),6:F1}%");
            }
            Forward.Clear(); Backward.Clear(); Idle.Clear();
        }
        _lastRecord = 0;
        Console.Error.Write(sb.ToString());
    }

    private static void Table(StringBuilder sb, string title, Dictionary<string, (long ticks, int calls)> d, long total)
    {
        long sum = d.Values.Sum(v => v.ticks);
        double ms(long t) => t * 1000.0 / Stopwatch.Frequency;
        sb.Append($"VLM_PROFILE {title}: {ms(sum):F1} ms in ops");
        if (total > 0) sb.Append($" of {ms(total):F1} ms total");
        sb.AppendLine();
        foreach (var (name, (ticks, calls)) in d.OrderByDescending(kv => kv.Value.ticks))
            sb.AppendLine($"  {name,-32} {calls,6} calls {ms(ticks),10:F1} ms {100.0 * ticks / Math.Max(1, sum),6:F1}%");
    }
}
