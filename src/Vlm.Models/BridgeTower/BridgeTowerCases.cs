// Runs a BridgeTower reference-fixture folder (`case.json` + HF config/weights + inputs.safetensors) the way the
// reference generator called HF transformers v4.47.1, and returns the outputs under the fixture's names.
using System.Text.Json;
using System.Text.RegularExpressions;
using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Models.BridgeTower;

public static partial class BridgeTowerCases
{
    /// <summary>True when <paramref name="folder"/> holds a BridgeTower case this runner understands.</summary>
    public static bool Handles(string folder)
    {
        var cj = Path.Combine(folder, "case.json");
        if (!File.Exists(cj)) return false;
        using var doc = JsonDocument.Parse(File.ReadAllText(cj));
        return doc.RootElement.TryGetProperty("class", out var c) && c.ValueKind == JsonValueKind.String
            && (c.GetString() ?? "").StartsWith("transformers.BridgeTower", StringComparison.Ordinal);
    }

    /// <summary>Every call of the case, eval mode, no grad. Error cases (HF crashes; no weights stored) run on a
    /// freshly initialised model (seed 0) to show the configuration works here.</summary>
    /// <param name="inference">run the calls in <see cref="Tensor.Inference"/> (prepacked Linear weights) instead of
    /// <see cref="Tensor.NoGrad"/>; the outputs must be the same bits.</param>
    public static Dictionary<string, Tensor> Run(string fixtureFolder, bool inference = false)
    {
        var (cls, kind, calls) = ReadCase(fixtureFolder);
        var config = BridgeTowerConfig.Load(Path.Combine(fixtureFolder, "config.json"));
        using var weights = kind == "error" ? null : BridgeTowerWeights.OpenFolder(fixtureFolder);
        var runner = Runner.Create(cls, config, weights);
        runner.Eval();
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var inputsPath = Path.Combine(fixtureFolder, "inputs.safetensors");
        // A construct-stage error case stores no inputs: building the model is the whole case.
        if (kind == "error" && !File.Exists(inputsPath)) return result;
        using var inputs = SafeTensorsFile.Open(inputsPath);
        using (inference ? Tensor.Inference() : Tensor.NoGrad())
            foreach (var (prefix, args) in calls)
                runner.Call(args, name => inputs.Load(name), result, prefix.Length == 0 ? "" : prefix + ".");
        return result;
    }

    /// <summary>The case's `gradients` procedure: train mode, loss of the (first) call, backward; returns the
    /// gradient of every parameter listed in grads.safetensors plus `__loss__`.</summary>
    public static Dictionary<string, Tensor> RunGradients(string fixtureFolder)
    {
        var (cls, _, calls) = ReadCase(fixtureFolder);
        var config = BridgeTowerConfig.Load(Path.Combine(fixtureFolder, "config.json"));
        using var inputs = SafeTensorsFile.Open(Path.Combine(fixtureFolder, "inputs.safetensors"));
        using var weights = BridgeTowerWeights.OpenFolder(fixtureFolder);
        using var gradFile = SafeTensorsFile.Open(Path.Combine(fixtureFolder, "grads.safetensors"));
        var runner = Runner.Create(cls, config, weights);
        runner.Train();
        var outs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var (prefix, args) = calls[0];
        runner.Call(args, name => inputs.Load(name), outs, prefix.Length == 0 ? "" : prefix + ".");
        var loss = outs[(prefix.Length == 0 ? "" : prefix + ".") + "loss"];
        loss.Backward();
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal) { ["__loss__"] = loss.Detach() };
        foreach (var name in gradFile.Names)
        {
            if (name == "__loss__") continue;
            var p = runner.Parameters[name];
            result[name] = p.Grad ?? Tensor.Zeros(p.ShapeArray(), DType.Float32);
        }
        return result;
    }

    private static (string cls, string kind, List<(string prefix, Dictionary<string, string> args)> calls) ReadCase(string folder)
    {
        var path = Path.Combine(folder, "case.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"no case.json in {folder}", path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        string cls = root.GetProperty("class").GetString() ?? "";
        string kind = root.TryGetProperty("kind", out var k) ? k.GetString() ?? "" : "";
        var calls = new List<(string, Dictionary<string, string>)>();
        if (root.TryGetProperty("calls", out var cs))
            foreach (var c in cs.EnumerateArray())
                calls.Add((c.GetProperty("output_prefix").GetString() ?? "", ParseCall(c.GetProperty("call").GetString() ?? "")));
        else
        {
            // Error cases record no call: run the plain forward on the stored inputs.
            calls.Add(("", new Dictionary<string, string>
            {
                ["input_ids"] = "<inputs:input_ids>", ["attention_mask"] = "<inputs:attention_mask>", ["pixel_values"] = "<inputs:pixel_values>",
            }));
        }
        return (cls, kind, calls);
    }

    /// <summary>"model(a=&lt;inputs:x&gt;, b=True)" → {a: "&lt;inputs:x&gt;", b: "True"}.</summary>
    internal static Dictionary<string, string> ParseCall(string call)
    {
        var m = CallRegex().Match(call.Trim());
        if (!m.Success) throw new InvalidDataException($"cannot parse call '{call}'");
        var args = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in m.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) throw new InvalidDataException($"cannot parse argument '{part}' of call '{call}'");
            args[part[..eq].Trim()] = part[(eq + 1)..].Trim();
        }
        return args;
    }

    [GeneratedRegex(@"^model\((.*)\)$", RegexOptions.Singleline)]
    private static partial Regex CallRegex();

    /// <summary>One model class and how a fixture call maps onto it.</summary>
    private abstract class Runner
    {
        public abstract Vlm.Nn.ParameterStore Parameters { get; }
        public abstract void Train();
        public abstract void Eval();
        public abstract void Call(Dictionary<string, string> args, Func<string, Tensor> input, Dictionary<string, Tensor> into, string prefix);

        public static Runner Create(string cls, BridgeTowerConfig config, IWeightSource? weights) => cls switch
        {
            "transformers.BridgeTowerModel" => new ModelRunner(config, weights),
            "transformers.BridgeTowerForImageAndTextRetrieval" => Labelled(new BridgeTowerForImageAndTextRetrieval(config, weights, new Rng(0))),
            "transformers.BridgeTowerForMaskedLM" => Labelled(new BridgeTowerForMaskedLM(config, weights, new Rng(0))),
            "transformers.BridgeTowerForContrastiveLearning" => new ContrastiveRunner(new BridgeTowerForContrastiveLearning(config, weights, new Rng(0))),
            _ => throw new NotSupportedException($"BridgeTower case class '{cls}' is not supported"),
        };

        protected static Tensor? Arg(Dictionary<string, string> args, string key, Func<string, Tensor> input)
        {
            if (!args.TryGetValue(key, out var v) || v == "None") return null;
            if (v.StartsWith("<inputs:", StringComparison.Ordinal) && v.EndsWith('>')) return input(v[8..^1]);
            throw new InvalidDataException($"argument {key}={v} is not an input reference");
        }

        protected static bool Flag(Dictionary<string, string> args, string key) => args.TryGetValue(key, out var v) && v == "True";

        protected static BridgeTowerForwardOptions Options(Dictionary<string, string> args) => new()
        {
            OutputHiddenStates = Flag(args, "output_hidden_states"),
            OutputAttentions = Flag(args, "output_attentions"),
            InterpolatePosEncoding = Flag(args, "interpolate_pos_encoding"),
        };

        protected static (Tensor ids, Tensor? mask, Tensor pixels) Common(Dictionary<string, string> args, Func<string, Tensor> input) =>
            (Arg(args, "input_ids", input) ?? throw new InvalidDataException("call has no input_ids"),
             Arg(args, "attention_mask", input),
             Arg(args, "pixel_values", input) ?? throw new InvalidDataException("call has no pixel_values"));
    }

    private sealed class ModelRunner : Runner
    {
        private readonly BridgeTowerModel _m;
        private readonly Vlm.Nn.ParameterStore _p;
        public ModelRunner(BridgeTowerConfig c, IWeightSource? w) => (_m, _p) = BridgeTowerWeights.LoadModel(c, w, new Rng(0));
        public override Vlm.Nn.ParameterStore Parameters => _p;
        public override void Train() => _m.Train();
        public override void Eval() => _m.Eval();

        public override void Call(Dictionary<string, string> args, Func<string, Tensor> input, Dictionary<string, Tensor> into, string prefix)
        {
            var (ids, mask, px) = Common(args, input);
            _m.Forward(ids, mask, px, Options(args)).AddNamed(into, prefix);
        }
    }

    private static Runner Labelled(BridgeTowerForImageAndTextRetrieval m) => new LabelledHeadRunner(m, m.Forward);
    private static Runner Labelled(BridgeTowerForMaskedLM m) => new LabelledHeadRunner(m, m.Forward);

    /// <summary>A head called as forward(ids, mask, pixels, labels, options) that returns logits and, with labels,
    /// a loss (ITM and MLM).</summary>
    private sealed class LabelledHeadRunner(BridgeTowerHeadModel m,
        Func<Tensor, Tensor?, Tensor, Tensor?, BridgeTowerForwardOptions, BridgeTowerHeadOutput> forward) : Runner
    {
        public override Vlm.Nn.ParameterStore Parameters => m.Parameters;
        public override void Train() => m.Train();
        public override void Eval() => m.Eval();

        public override void Call(Dictionary<string, string> args, Func<string, Tensor> input, Dictionary<string, Tensor> into, string prefix)
        {
            var (ids, mask, px) = Common(args, input);
            var o = forward(ids, mask, px, Arg(args, "labels", input), Options(args));
            into[prefix + "logits"] = o.Logits;
            if (o.Loss != null) into[prefix + "loss"] = o.Loss;
            o.Base.AddStates(into, prefix);
        }
    }

    private sealed class ContrastiveRunner(BridgeTowerForContrastiveLearning m) : Runner
    {
        public override Vlm.Nn.ParameterStore Parameters => m.Parameters;
        public override void Train() => m.Train();
        public override void Eval() => m.Eval();

        public override void Call(Dictionary<string, string> args, Func<string, Tensor> input, Dictionary<string, Tensor> into, string prefix)
        {
            var (ids, mask, px) = Common(args, input);
            var o = m.Forward(ids, mask, px, Flag(args, "return_loss"), Options(args));
            into[prefix + "logits"] = o.Logits;
            into[prefix + "text_embeds"] = o.TextEmbeds;
            into[prefix + "image_embeds"] = o.ImageEmbeds;
            into[prefix + "cross_embeds"] = o.CrossEmbeds;
            if (o.Loss != null) into[prefix + "loss"] = o.Loss;
            o.Base.AddStates(into, prefix);
        }
    }
}
