using Vlm.Core;
using Vlm.Nn.Optim;

namespace Vlm.Nn.Tests;

/// <summary>
/// End-to-end: a pre-norm transformer classifier built only from Vlm.Nn layers learns a task that needs
/// attention and positions (does token 3 come before token 5?), with AdamW + warmup + clipping + dropout,
/// and a second run from the same seed is bit-identical.
/// </summary>
public class TinyTransformerTests
{
    private const int Vocab = 8, SeqLen = 8, Dim = 32, Heads = 4, Classes = 2;

    private sealed class EncoderLayer : Module
    {
        private readonly LayerNorm _ln1, _ln2;
        private readonly MultiHeadAttention _attn;
        private readonly Linear _fc1, _fc2;
        private readonly Dropout _drop;
        private readonly Func<Tensor, Tensor> _act = Activations.Get("gelu");

        public EncoderLayer(VarBuilder vb)
        {
            _ln1 = Add(new LayerNorm(Dim, vb["ln1"]));
            _attn = Add(new MultiHeadAttention(Dim, Heads, vb["attn"], attentionDropout: 0.1f));
            _ln2 = Add(new LayerNorm(Dim, vb["ln2"]));
            _fc1 = Add(new Linear(Dim, 2 * Dim, vb["fc1"]));
            _fc2 = Add(new Linear(2 * Dim, Dim, vb["fc2"]));
            _drop = Add(new Dropout(0.1f, vb));
        }

        public Tensor Forward(Tensor x)
        {
            x = x + _drop.Forward(_attn.Forward(_ln1.Forward(x)));
            return x + _drop.Forward(_fc2.Forward(_act(_fc1.Forward(_ln2.Forward(x)))));
        }
    }

    private sealed class Classifier : Module
    {
        private readonly Embedding _tok, _pos;
        private readonly EncoderLayer[] _layers;
        private readonly LayerNorm _lnF;
        private readonly Linear _head;

        public Classifier(VarBuilder vb)
        {
            _tok = Add(new Embedding(Vocab, Dim, vb["tok"], init: Init.Normal(0, 0.5f)));
            _pos = Add(new Embedding(SeqLen, Dim, vb["pos"], init: Init.Normal(0, 0.5f)));
            _layers = [Add(new EncoderLayer(vb["layers"][0])), Add(new EncoderLayer(vb["layers"][1]))];
            _lnF = Add(new LayerNorm(Dim, vb["ln_f"]));
            _head = Add(new Linear(Dim, Classes, vb["head"]));
        }

        public Tensor Forward(Tensor ids) // (B, T) -> (B, classes)
        {
            var x = _tok.Forward(ids) + _pos.Forward(Tensor.Arange(SeqLen));
            foreach (var l in _layers) x = l.Forward(x);
            return _head.Forward(_lnF.Forward(x).Mean(1));
        }
    }

    /// <summary>Sequences holding one 3 and one 5 among other tokens; label 1 when the 3 comes first.</summary>
    private static (Tensor ids, int[] labels) Batch(Rng rng, int b)
    {
        var ids = new long[b * SeqLen];
        var labels = new int[b];
        for (int i = 0; i < b; i++)
        {
            for (int t = 0; t < SeqLen; t++)
            {
                long v;
                do v = rng.NextInt(Vocab); while (v is 3 or 5);
                ids[i * SeqLen + t] = v;
            }
            int p3 = rng.NextInt(SeqLen), p5;
            do p5 = rng.NextInt(SeqLen); while (p5 == p3);
            ids[i * SeqLen + p3] = 3; ids[i * SeqLen + p5] = 5;
            labels[i] = p3 < p5 ? 1 : 0;
        }
        return (Tensor.FromArray(ids, b, SeqLen), labels);
    }

    private static Tensor CrossEntropy(Tensor logits, int[] labels)
    {
        return F.CrossEntropy(logits, Tensor.FromArray(labels.Select(l => (long)l).ToArray(), labels.Length));
    }

    private static (float[] finalParams, float evalLoss, float evalAcc) Train(ulong seed, int steps)
    {
        var vb = VarBuilder.Init(new Rng(seed));
        var model = new Classifier(vb);
        var store = vb.Finish();
        store.Dropout.Reseed(seed + 1);
        var opt = new AdamW(ParamGroups.ByName(store, 0.01), lr: 3e-3) { Schedule = LrSchedule.LinearWarmupDecay(10, steps) };
        var data = new Rng(seed + 2);
        model.Train();
        for (int s = 0; s < steps; s++)
        {
            var (ids, labels) = Batch(data, 32);
            opt.ZeroGrad();
            CrossEntropy(model.Forward(ids), labels).Backward();
            GradClip.ClipGradNorm(opt, 1.0);
            opt.Step();
        }
        model.Eval();
        var (eIds, eLabels) = Batch(new Rng(999), 256);
        float loss, acc;
        using (Tensor.NoGrad())
        {
            var logits = model.Forward(eIds);
            loss = CrossEntropy(logits, eLabels).Item();
            int ok = 0;
            for (int i = 0; i < eLabels.Length; i++) if ((logits[i, 1] > logits[i, 0] ? 1 : 0) == eLabels[i]) ok++;
            acc = (float)ok / eLabels.Length;
        }
        return (store.Unique().SelectMany(kv => kv.Value.ToArray()).ToArray(), loss, acc);
    }

    [Fact]
    public void LearnsOrderTaskAndIsBitIdenticalAcrossRuns()
    {
        var (p1, loss, acc) = Train(42, 80);
        Assert.True(loss < 0.2f && acc > 0.93f, $"eval loss {loss}, accuracy {acc}");
        var (p2, loss2, _) = Train(42, 80);
        Assert.Equal(p1, p2);
        Assert.Equal(loss, loss2);
    }
}
