using System.Threading.Channels;

namespace Vlm.Training.Pipeline;

/// <summary>
/// Runs a producer (decoding, preprocessing, collation) on background workers, at most <c>depth</c> items
/// ahead of the consumer, and yields results in input order, so compute never waits for decoding and the
/// order (hence training) stays deterministic whatever the thread timing.
/// </summary>
public sealed class Prefetcher<TIn, TOut> : IEnumerable<TOut>
{
    private readonly IReadOnlyList<TIn> _items;
    private readonly Func<TIn, TOut> _produce;
    private readonly int _workers;
    private readonly int _depth;

    public Prefetcher(IReadOnlyList<TIn> items, Func<TIn, TOut> produce, int workers = 1, int depth = 4)
    {
        if (workers < 1) throw new ArgumentOutOfRangeException(nameof(workers));
        if (depth < 1) throw new ArgumentOutOfRangeException(nameof(depth));
        _items = items; _produce = produce; _workers = workers; _depth = depth;
    }

    public IEnumerator<TOut> GetEnumerator()
    {
        int n = _items.Count;
        if (n == 0) yield break;
        // One slot per item, filled by whichever worker claims it; the consumer waits on slots in order.
        var slots = new TaskCompletionSource<TOut>[n];
        for (int i = 0; i < n; i++) slots[i] = new TaskCompletionSource<TOut>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var cts = new CancellationTokenSource();
        var window = new SemaphoreSlim(_depth, _depth);
        int next = -1;
        var workers = Enumerable.Range(0, _workers).Select(_ => Task.Run(() =>
        {
            while (!cts.IsCancellationRequested)
            {
                try { window.Wait(cts.Token); }
                catch (OperationCanceledException) { return; }
                int i = Interlocked.Increment(ref next);
                if (i >= n) return;
                try { slots[i].SetResult(_produce(_items[i])); }
                catch (Exception e) { slots[i].SetException(e); }
            }
        })).ToArray();
        try
        {
            for (int i = 0; i < n; i++)
            {
                TOut v;
                try { v = slots[i].Task.GetAwaiter().GetResult(); }
                finally { window.Release(); }
                yield return v;
            }
        }
        finally
        {
            cts.Cancel();
            try { Task.WaitAll(workers); } catch (AggregateException) { }
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
