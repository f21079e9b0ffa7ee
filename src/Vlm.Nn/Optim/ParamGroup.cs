using Vlm.Core;

namespace Vlm.Nn.Optim;

/// <summary>Parameters sharing one learning-rate multiplier and one weight decay (a torch param group).
/// The group's learning rate is <c>optimizer.LearningRate · LrScale · schedule factor</c>.</summary>
public sealed class ParamGroup
{
    public string Name { get; }
    public IReadOnlyList<KeyValuePair<string, Tensor>> Params { get; }
    public double LrScale { get; init; } = 1.0;
    public double WeightDecay { get; init; }

    public ParamGroup(string name, IEnumerable<KeyValuePair<string, Tensor>> parameters)
    {
        Name = name;
        Params = parameters.ToList();
    }
}

public static class ParamGroups
{
    /// <summary>The usual transformer rule: no weight decay on biases and normalisation weights.</summary>
    public static bool DefaultNoDecay(string name) =>
        name.EndsWith(".bias", StringComparison.Ordinal) || name == "bias"
        || name.Contains("LayerNorm", StringComparison.Ordinal) || name.Contains("layernorm", StringComparison.Ordinal)
        || name.Contains("norm", StringComparison.Ordinal);

    /// <summary>One group with every distinct parameter of the store.</summary>
    public static List<ParamGroup> All(ParameterStore store, double weightDecay = 0.0) =>
        [new ParamGroup("all", store.Unique()) { WeightDecay = weightDecay }];

    /// <summary>
    /// Splits the store's distinct parameters into groups by (decays?, lr multiplier), in order of first
    /// appearance. <paramref name="noDecay"/> defaults to <see cref="DefaultNoDecay"/>; <paramref name="lrScale"/>
    /// (default 1) gives per-parameter multipliers, e.g. 5× for a freshly initialised head.
    /// Frozen parameters stay in their groups; the optimizers skip any without a gradient.
    /// </summary>
    public static List<ParamGroup> ByName(ParameterStore store, double weightDecay, Func<string, bool>? noDecay = null, Func<string, double>? lrScale = null)
    {
        noDecay ??= DefaultNoDecay;
        var order = new List<(bool decay, double scale)>();
        var members = new Dictionary<(bool, double), List<KeyValuePair<string, Tensor>>>();
        foreach (var kv in store.Unique())
        {
            var key = (!noDecay(kv.Key), lrScale?.Invoke(kv.Key) ?? 1.0);
            if (!members.TryGetValue(key, out var list))
            {
                members[key] = list = new();
                order.Add(key);
            }
            list.Add(kv);
        }
        return order.Select(k => new ParamGroup(
                (k.decay ? "decay" : "no_decay") + (k.scale == 1.0 ? "" : $"_lr{k.scale.ToString(System.Globalization.CultureInfo.InvariantCulture)}"),
                members[k])
            { WeightDecay = k.decay ? weightDecay : 0.0, LrScale = k.scale }).ToList();
    }
}
