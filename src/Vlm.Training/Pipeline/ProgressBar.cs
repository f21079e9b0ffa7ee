using System.Diagnostics;
using System.Globalization;

namespace Vlm.Training.Pipeline;

/// <summary>
/// A one-line progress bar with throughput and ETA and free-form metrics ("loss 2.31"). On a terminal it redraws
/// in place; when output is redirected (CI, logs) it prints a plain line at most every few seconds.
/// </summary>
public sealed class ProgressBar : IDisposable
{
    private readonly string _label;
    private readonly long _total;
    private readonly string _unit;
    private readonly TextWriter _out;
    private readonly bool _interactive;
    private readonly Stopwatch _sw = Stopwatch.StartNew();
    private long _done;
    private string _metrics = "";
    private double _lastDraw = -1;
    private bool _finished;

    public ProgressBar(string label, long total, string unit = "it", TextWriter? output = null)
    {
        _label = label; _total = Math.Max(total, 0); _unit = unit;
        _out = output ?? Console.Error;
        _interactive = output is null && !Console.IsErrorRedirected;
    }

    public long Done => _done;

    public void Report(long done, string? metrics = null)
    {
        _done = done;
        if (metrics != null) _metrics = metrics;
        double t = _sw.Elapsed.TotalSeconds;
        double interval = _interactive ? 0.1 : 5.0;
        if (_lastDraw >= 0 && t - _lastDraw < interval && done < _total) return;
        _lastDraw = t;
        Draw();
    }

    public void Advance(long n = 1, string? metrics = null) => Report(_done + n, metrics);

    private void Draw()
    {
        double t = _sw.Elapsed.TotalSeconds;
        double rate = t > 0 ? _done / t : 0;
        string eta = rate > 0 && _total > 0 ? Format(TimeSpan.FromSeconds((_total - _done) / rate)) : "?";
        double frac = _total > 0 ? Math.Clamp(_done / (double)_total, 0, 1) : 0;
        const int width = 24;
        int fill = (int)(frac * width);
        string bar = new string('#', fill) + new string('.', width - fill);
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{_label} [{bar}] {_done}/{_total} {rate:F1} {_unit}/s eta {eta} {_metrics}");
        if (_interactive) _out.Write("\r" + line.PadRight(Math.Min(Console.BufferWidth > 0 ? Console.BufferWidth - 1 : 120, 160)));
        else _out.WriteLine(line);
    }

    private static string Format(TimeSpan s) => s.TotalHours >= 1 ? s.ToString(@"h\:mm\:ss") : s.ToString(@"m\:ss");

    public void Dispose()
    {
        if (_finished) return;
        _finished = true;
        Draw();
        if (_interactive) _out.WriteLine();
    }
}
