using Vlm.Core;

namespace Vlm.Nn.Optim;

/// <summary>
/// Base of the optimizers: parameter groups, a base learning rate scaled per group and by an optional
/// <see cref="LrSchedule"/>, per-parameter state kept by name so it can be checkpointed and restored exactly.
/// <see cref="Step"/> uses the schedule factor for <see cref="StepsTaken"/> and then increments it, which is
/// PyTorch's order (optimizer.step(); scheduler.step()). Parameters whose Grad is null or that do not require
/// grad are skipped (their state does not advance), like PyTorch.
/// </summary>
public abstract class Optimizer
{
    private readonly List<ParamGroup> _groups;

    public IReadOnlyList<ParamGroup> Groups => _groups;

    /// <summary>Base learning rate (before group scale and schedule).</summary>
    public double LearningRate { get; set; }

    public LrSchedule? Schedule { get; set; }

    /// <summary>Number of completed <see cref="Step"/> calls (the scheduler's step).</summary>
    public long StepsTaken { get; protected set; }

    protected Optimizer(IEnumerable<ParamGroup> groups, double lr)
    {
        _groups = groups.ToList();
        if (_groups.Count == 0) throw new ArgumentException("optimizer needs at least one parameter group");
        if (!(lr >= 0)) throw new ArgumentException($"learning rate must be ≥ 0, got {lr}");
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var g in _groups)
            foreach (var (name, t) in g.Params)
            {
                if (!seen.Add(t)) throw new ArgumentException($"parameter '{name}' appears in more than one group (or twice)");
                if (!names.Add(name)) throw new ArgumentException($"two parameters are named '{name}'");
                if (t.DType != DType.Float32 || !t.IsContiguous) throw new ArgumentException($"parameter '{name}' must be a contiguous float32 tensor");
            }
        LearningRate = lr;
    }

    /// <summary>The learning rate group <paramref name="g"/> uses in the next step (torch's group['lr']).</summary>
    public double GroupLr(ParamGroup g) => LearningRate * g.LrScale * (Schedule?.Factor(StepsTaken) ?? 1.0);

    public void Step()
    {
        using (Tensor.NoGrad())
        {
            foreach (var g in _groups)
            {
                double lr = GroupLr(g);
                foreach (var (name, p) in g.Params)
                {
                    if (!p.RequiresGrad || p.Grad is null) continue;
                    var grad = p.Grad.Contiguous();
                    if (!grad.Shape.SequenceEqual(p.Shape)) throw new InvalidOperationException($"gradient of '{name}' has shape {grad.ShapeString}, parameter {p.ShapeString}");
                    Update(name, p.Span, grad.Span, lr, g.WeightDecay);
                }
            }
        }
        StepsTaken++;
    }

    /// <summary>Clears the gradient of every parameter in the groups (torch's zero_grad(set_to_none=True)).</summary>
    /// <param name="recycle">also hand each old gradient's buffer back to the pool, so the next backward reuses it
    /// instead of allocating (and page-faulting in) a fresh one: a model's worth of memory per step. Only for
    /// callers that keep no reference to the old gradients (they are disposed; a gradient shared with another
    /// tensor is left alone).</param>
    public void ZeroGrad(bool recycle = false)
    {
        foreach (var g in _groups)
            foreach (var (_, p) in g.Params)
            {
                if (recycle) p.Grad?.Dispose();
                p.Grad = null;
            }
    }

    protected abstract void Update(string name, Span<float> p, ReadOnlySpan<float> grad, double lr, double weightDecay);

    protected IEnumerable<KeyValuePair<string, Tensor>> AllParams => _groups.SelectMany(g => g.Params);

    // ------------------------------------------------------------------ state

    /// <summary>Everything needed to resume bit-identically: "steps_taken" and per-parameter "state.{name}.{slot}".</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["steps_taken"] = Tensor.FromArray(new long[] { StepsTaken }, 1),
        };
        foreach (var (name, p) in AllParams)
            foreach (var (slot, t) in SaveSlots(name)) d[$"state.{name}.{slot}"] = t;
        return d;
    }

    /// <summary>Restores <see cref="StateDict"/>; every unknown, missing-partner or mis-shaped entry is reported in one error
    /// and nothing is changed.</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        var problems = new List<string>();
        if (!state.TryGetValue("steps_taken", out var st) || st.DType != DType.Int64 || st.Numel != 1) problems.Add("steps_taken: missing or not one int64");
        var byName = AllParams.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var perParam = new Dictionary<string, Dictionary<string, Tensor>>(StringComparer.Ordinal);
        foreach (var (key, t) in state)
        {
            if (key == "steps_taken") continue;
            string? pname = null, slot = null;
            if (key.StartsWith("state.", StringComparison.Ordinal))
            {
                int dot = key.LastIndexOf('.');
                if (dot > 6) { pname = key[6..dot]; slot = key[(dot + 1)..]; }
            }
            if (pname is null || slot is null || !byName.ContainsKey(pname)) { problems.Add($"{key}: unexpected (no such parameter in this optimizer)"); continue; }
            if (!perParam.TryGetValue(pname, out var slots)) perParam[pname] = slots = new(StringComparer.Ordinal);
            slots[slot] = t;
        }
        foreach (var (pname, slots) in perParam)
        {
            var err = ValidateSlots(pname, byName[pname], slots);
            if (err != null) problems.Add(err);
        }
        if (problems.Count > 0)
            throw new InvalidDataException($"optimizer state does not fit ({problems.Count} problems):\n  " + string.Join("\n  ", problems));
        ClearState();
        foreach (var (pname, slots) in perParam) LoadSlots(pname, byName[pname], slots);
        StepsTaken = st!.ToInt64Array()[0];
    }

    protected abstract IEnumerable<KeyValuePair<string, Tensor>> SaveSlots(string name);
    /// <summary>Null when the slots make a valid state for <paramref name="param"/>, else one problem line.</summary>
    protected abstract string? ValidateSlots(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots);
    protected abstract void LoadSlots(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots);
    protected abstract void ClearState();

    protected static string? CheckSlot(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots, string slot)
    {
        if (!slots.TryGetValue(slot, out var t)) return $"state.{name}: slot '{slot}' missing";
        if (t.DType != DType.Float32 || !t.Shape.SequenceEqual(param.Shape)) return $"state.{name}.{slot}: {t.DType} {t.ShapeString}, parameter is float32 {param.ShapeString}";
        return null;
    }

    protected static float[] CopyOf(Tensor t) => t.Contiguous().ToArray();

    /// <summary>Runs an element-wise update over [0, n) in chunks spread over the cores when n is large. Chunk bounds
    /// are multiples of 64 elements, and every element's arithmetic is independent of the split, so results do not
    /// depend on the number of cores.</summary>
    protected static void Chunked(int n, Action<int, int> body)
    {
        const int MinPerWorker = 1 << 15;
        int workers = Math.Min(Environment.ProcessorCount, n / MinPerWorker);
        if (workers <= 1) { body(0, n); return; }
        Parallel.For(0, workers, w =>
        {
            int s = (int)((long)n * w / workers) & ~63, e = w == workers - 1 ? n : (int)((long)n * (w + 1) / workers) & ~63;
            if (e > s) body(s, e);
        });
    }
}
