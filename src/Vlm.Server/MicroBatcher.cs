using System.Threading.Channels;

namespace Vlm.Server;

/// <summary>
/// One task kind's request queue and worker. Requests wait in a bounded channel (full ⇒ 503); the worker takes the
/// first waiting request, collects more for up to the batch window or until <c>maxBatch</c>, and runs them as one
/// batched call. A request whose client timed out (504) or went away before the worker took it is skipped. If a
/// batched call throws, each request is retried alone so one bad input cannot fail its neighbours.
/// </summary>
public sealed class MicroBatcher<TIn, TOut> : IDisposable
{
    private sealed class Item(TIn input)
    {
        public readonly TIn Input = input;
        public readonly TaskCompletionSource<TOut> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int State;   // 0 waiting, 1 taken by the worker, 2 abandoned by its caller
    }

    private readonly Channel<Item> _channel;
    private readonly Func<IReadOnlyList<TIn>, TOut[]> _run;
    private readonly int _maxBatch, _capacity;
    private readonly TimeSpan _window;
    private readonly Metrics _metrics;
    private readonly Thread _worker;
    private int _depth;

    public string Kind { get; }
    public int QueueDepth => Volatile.Read(ref _depth);

    /// <param name="run">computes one output per input, in order; called on the worker thread only</param>
    public MicroBatcher(string kind, Func<IReadOnlyList<TIn>, TOut[]> run, int maxBatch, int capacity, TimeSpan window, Metrics metrics)
    {
        Kind = kind; _run = run; _maxBatch = maxBatch; _capacity = capacity; _window = window; _metrics = metrics;
        _channel = Channel.CreateBounded<Item>(new BoundedChannelOptions(capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        metrics.RegisterQueue(kind, () => QueueDepth);
        // A dedicated thread: the batched call is long CPU work and must not hold a thread-pool thread Kestrel needs.
        _worker = new Thread(Loop) { IsBackground = true, Name = $"vlm-batch-{kind}" };
        _worker.Start();
    }

    /// <summary>Queues <paramref name="input"/> and waits for its result: 503 when the queue is full, 504 after
    /// <paramref name="timeout"/>.</summary>
    public async Task<TOut> SubmitAsync(TIn input, TimeSpan timeout, CancellationToken ct)
    {
        var item = new Item(input);
        Interlocked.Increment(ref _depth);
        if (!_channel.Writer.TryWrite(item))
        {
            Interlocked.Decrement(ref _depth);
            _metrics.Rejected(Kind);
            throw new ApiException(503, $"the {Kind} queue is full ({_capacity} requests waiting); retry later");
        }
        try
        {
            return await item.Done.Task.WaitAsync(timeout, ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Interlocked.CompareExchange(ref item.State, 2, 0);
            _metrics.Timeout(Kind);
            throw new ApiException(504, $"the {Kind} request did not finish within {timeout.TotalMilliseconds:F0} ms");
        }
        catch (OperationCanceledException)
        {
            Interlocked.CompareExchange(ref item.State, 2, 0);
            throw;
        }
    }

    private bool TryTake(out Item item)
    {
        while (_channel.Reader.TryRead(out item!))
        {
            Interlocked.Decrement(ref _depth);
            if (Interlocked.CompareExchange(ref item.State, 1, 0) == 0) return true;
        }
        return false;
    }

    private void Loop()
    {
        var batch = new List<Item>(_maxBatch);
        while (true)
        {
            try
            {
                if (!_channel.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) return;
            }
            catch (ChannelClosedException) { return; }
            batch.Clear();
            if (!TryTake(out var first)) continue;
            batch.Add(first);
            var deadline = DateTime.UtcNow + _window;
            while (batch.Count < _maxBatch)
            {
                if (TryTake(out var more)) { batch.Add(more); continue; }
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) break;
                var wait = _channel.Reader.WaitToReadAsync().AsTask();
                if (!wait.Wait(left) || !wait.Result) break;
            }
            Execute(batch);
        }
    }

    private void Execute(List<Item> batch)
    {
        _metrics.Batch(Kind, batch.Count);
        try
        {
            var outs = _run(batch.Select(b => b.Input).ToList());
            if (outs.Length != batch.Count) throw new InvalidOperationException($"{Kind}: batch of {batch.Count} gave {outs.Length} results");
            for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(outs[i]);
        }
        catch (Exception) when (batch.Count > 1)
        {
            foreach (var b in batch) Execute([b]);
        }
        catch (Exception e)
        {
            batch[0].Done.TrySetException(e);
        }
    }

    public void Dispose()
    {
        _channel.Writer.TryComplete();
        _worker.Join(TimeSpan.FromSeconds(30));
    }
}
