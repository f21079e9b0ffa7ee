using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Nn.Tests;

public class StateDictTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "vlm-nn-sd-" + Guid.NewGuid().ToString("N"));

    public StateDictTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, true);

    private static ParameterStore Model(ulong seed)
    {
        var vb = VarBuilder.Init(new Rng(seed));
        var emb = new Embedding(6, 4, vb["embeddings"]["word_embeddings"]);
        _ = new LayerNorm(4, vb["embeddings"]["LayerNorm"], eps: 1e-12f);
        _ = new Linear(4, 3, vb["pooler"]["dense"]);
        vb["lm_head"].Tie("weight", emb.Weight);
        return vb.Finish();
    }

    [Fact]
    public void SaveThenLoadRestoresEveryParameter()
    {
        var a = Model(1);
        var path = Path.Combine(_dir, "model.safetensors");
        a.Save(path, new Dictionary<string, string> { ["format"] = "pt" });
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
        var b = Model(2);
        Assert.NotEqual(a["pooler.dense.weight"].ToArray(), b["pooler.dense.weight"].ToArray());
        b.Load(path);
        foreach (var (name, t) in a.Named) Assert.Equal(t.ToArray(), b[name].ToArray());
        // The tie survives loading: one tensor under two names.
        Assert.Same(b["embeddings.word_embeddings.weight"], b["lm_head.weight"]);
        // A VarBuilder reads the same file.
        using var f = SafeTensorsFile.Open(path);
        var vb = VarBuilder.FromWeights(f);
        var emb = new Embedding(6, 4, vb["embeddings"]["word_embeddings"]);
        _ = new LayerNorm(4, vb["embeddings"]["LayerNorm"]);
        _ = new Linear(4, 3, vb["pooler"]["dense"]);
        vb["lm_head"].Tie("weight", emb.Weight);
        var c = vb.Finish();
        Assert.Equal(a["pooler.dense.bias"].ToArray(), c["pooler.dense.bias"].ToArray());
    }

    [Fact]
    public void StrictLoadListsEveryProblemAndChangesNothing()
    {
        var a = Model(1);
        var sd = a.StateDict();
        sd.Remove("pooler.dense.bias");
        sd["embeddings.LayerNorm.weight"] = Tensor.Zeros(5);
        sd["embeddings.position_ids"] = Tensor.FromArray(new long[] { 0, 1 }, 2);
        sd["pooler.dense.weight"] = Tensor.FromArray(new long[12], 3, 4);
        var path = Path.Combine(_dir, "bad.safetensors");
        SafeTensors.Save(path, sd);

        var b = Model(2);
        var before = b.Named.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray());
        var ex = Assert.Throws<InvalidDataException>(() => b.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("missing keys (1)", ex.Message);
        Assert.Contains("pooler.dense.bias", ex.Message);
        Assert.Contains("unexpected keys (1)", ex.Message);
        Assert.Contains("embeddings.position_ids", ex.Message);
        Assert.Contains("embeddings.LayerNorm.weight: file [5], model [4]", ex.Message);
        Assert.Contains("pooler.dense.weight: file dtype I64", ex.Message);
        foreach (var (name, t) in b.Named) Assert.Equal(before[name], t.ToArray());

        // Non-strict tolerates the unexpected key but not the rest.
        ex = Assert.Throws<InvalidDataException>(() => b.Load(path, strict: false));
        Assert.DoesNotContain("position_ids", ex.Message);
        Assert.Contains("pooler.dense.bias", ex.Message);
    }

    [Fact]
    public void NonStrictLoadIgnoresExtraKeysOnly()
    {
        var a = Model(1);
        var sd = a.StateDict();
        sd["extra.buffer"] = Tensor.Zeros(2);
        var path = Path.Combine(_dir, "extra.safetensors");
        SafeTensors.Save(path, sd);
        var b = Model(3);
        Assert.Throws<InvalidDataException>(() => b.Load(path));
        b.Load(path, strict: false);
        Assert.Equal(a["embeddings.LayerNorm.bias"].ToArray(), b["embeddings.LayerNorm.bias"].ToArray());
    }

    [Fact]
    public void CorruptOrAbsentFileGivesClearError()
    {
        var path = Path.Combine(_dir, "trunc.safetensors");
        Model(1).Save(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var ex = Assert.ThrowsAny<Exception>(() => Model(1).Load(path));
        Assert.Contains("trunc.safetensors", ex.Message);
        Assert.ThrowsAny<IOException>(() => Model(1).Load(Path.Combine(_dir, "absent.safetensors")));
    }

    [Fact]
    public void ShareParametersReusesTensorsInsideTheScopeOnly()
    {
        var vb = VarBuilder.Init(new Rng(1));
        var a = new Linear(3, 4, vb["enc"]);
        var store = vb.Store;
        Linear b;
        using (vb.ShareParameters(n => n == "dec.weight" ? store["enc.weight"] : null))
            b = new Linear(3, 4, vb["dec"]);
        var c = new Linear(3, 4, vb["other"]);
        var s = vb.Finish();
        Assert.Same(s["enc.weight"], s["dec.weight"]);
        Assert.NotSame(s["enc.bias"], s["dec.bias"]);
        Assert.NotSame(s["enc.weight"], s["other.weight"]);
        Assert.Equal(5, s.Unique().Count());                 // enc w/b, dec b, other w/b
        Assert.Equal(6, s.Count);
        var y = b.Forward(Tensor.Ones(1, 3));
        y.Sum().Backward();
        Assert.NotNull(s["enc.weight"].Grad);                // gradients reach the shared tensor
        _ = a; _ = c;
        using (vb.ShareParameters(_ => Tensor.Zeros(2, 2)))
            Assert.Throws<InvalidOperationException>(() => new Linear(3, 4, vb["bad"]));
    }
}
