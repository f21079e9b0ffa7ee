using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

public class BridgeTowerLoadingTests
{
    private static BridgeTowerConfig Config(string c) => BridgeTowerConfig.Load(Fixtures.Path(c, "config.json"));

    [Fact]
    public void Every_key_problem_is_listed_in_one_error()
    {
        var w = Fixtures.Load("bridgetower_model", "model.safetensors");
        w.Remove("cross_modal_text_pooler.dense.bias");
        w.Remove("text_model.encoder.layer.2.output.LayerNorm.weight");
        w["bogus.weight"] = Tensor.Zeros(3);
        w["token_type_embeddings.weight"] = Tensor.Zeros(3, 64);
        var e = Assert.Throws<InvalidDataException>(() => BridgeTowerWeights.LoadModel(Config("bridgetower_model"), new InMemoryWeights(w, "ckpt.safetensors")));
        Assert.Contains("ckpt.safetensors", e.Message);
        Assert.Contains("missing keys (2)", e.Message);
        Assert.Contains("cross_modal_text_pooler.dense.bias", e.Message);
        Assert.Contains("text_model.encoder.layer.2.output.LayerNorm.weight", e.Message);
        Assert.Contains("unexpected keys (1)", e.Message);
        Assert.Contains("bogus.weight", e.Message);
        Assert.Contains("mis-shaped keys (1)", e.Message);
        Assert.Contains("token_type_embeddings.weight: file [3, 64], model [2, 64]", e.Message);
    }

    [Fact]
    public void Config_contradicting_weights_fails_at_construction()
    {
        var cfg = Config("bridgetower_model");
        var wrong = cfg with { TextConfig = cfg.TextConfig with { IntermediateSize = 48 } };
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_model"));
        var e = Assert.Throws<InvalidDataException>(() => BridgeTowerWeights.LoadModel(wrong, w));
        Assert.Contains("text_model.encoder.layer.0.intermediate.dense.weight: file [64, 64], model [48, 64]", e.Message);
        Assert.Contains("cross_modal_image_layers.1.output.dense.weight", e.Message);
        var deeper = cfg with { NumHiddenLayers = 3 };
        var e2 = Assert.Throws<InvalidDataException>(() => BridgeTowerWeights.LoadModel(deeper, w));
        Assert.Contains("cross_modal_text_layers.2.attention.self.query.weight", e2.Message);
    }

    [Fact]
    public void Corrupt_weight_file_names_itself()
    {
        var dir = Directory.CreateTempSubdirectory("bt-corrupt-").FullName;
        try
        {
            foreach (var f in new[] { "case.json", "config.json", "inputs.safetensors" })
                File.Copy(Fixtures.Path("bridgetower_itm", f), Path.Combine(dir, f));
            var bytes = File.ReadAllBytes(Fixtures.Path("bridgetower_itm", "model.safetensors"));
            var path = Path.Combine(dir, "model.safetensors");
            File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 2).ToArray());
            var e = Assert.Throws<InvalidDataException>(() => BridgeTowerCases.Run(dir));
            Assert.Contains(path, e.Message);
            File.WriteAllText(Path.Combine(dir, "config.json"), "{ not json");
            var e2 = Assert.Throws<InvalidDataException>(() => BridgeTowerCases.Run(dir));
            Assert.Contains(Path.Combine(dir, "config.json"), e2.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Head_checkpoint_loads_into_base_model_and_base_checkpoint_into_heads()
    {
        var cfg = Config("bridgetower_itm");
        using var itmWeights = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_itm"));
        var (model, store) = BridgeTowerWeights.LoadModel(cfg, itmWeights);
        Assert.True(store.Contains("token_type_embeddings.weight"));
        var itm = new BridgeTowerForImageAndTextRetrieval(cfg, itmWeights);
        var inputs = Fixtures.Load("bridgetower_itm", "inputs.safetensors");
        using (Tensor.NoGrad())
        {
            model.Eval(); itm.Eval();
            var a = model.Forward(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]).PoolerOutput;
            var b = itm.Forward(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]).Base.PoolerOutput;
            TensorAssert.Close(b, a, 0f, 0f, "pooler");
        }
        // A base checkpoint has no ITM head: the error lists exactly the head's keys as missing.
        using var baseWeights = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_model"));
        var e = Assert.Throws<InvalidDataException>(() => new BridgeTowerForImageAndTextRetrieval(cfg, baseWeights));
        Assert.Contains("missing keys (2)", e.Message);
        Assert.Contains("itm_score.fc.weight", e.Message);
        Assert.DoesNotContain("unexpected", e.Message);
    }

    [Fact]
    public void Checkpoint_with_other_heads_loads_into_one_head()
    {
        // bridgetower-large-itm-mlm-itc style: a checkpoint carrying several heads loads into any one of them.
        var w = Fixtures.Load("bridgetower_itm", "model.safetensors");
        foreach (var (k, v) in Fixtures.Load("bridgetower_mlm", "model.safetensors"))
            if (k.StartsWith("mlm_score.", StringComparison.Ordinal)) w[k] = v;
        var cfg = Config("bridgetower_itm");
        var itm = new BridgeTowerForImageAndTextRetrieval(cfg, new InMemoryWeights(w));
        Assert.False(itm.Parameters.Contains("mlm_score.bias"));
        w["not_a_head.weight"] = Tensor.Zeros(2);
        var e = Assert.Throws<InvalidDataException>(() => new BridgeTowerForImageAndTextRetrieval(cfg, new InMemoryWeights(w)));
        Assert.Contains("unexpected keys (1)", e.Message);
        Assert.Contains("not_a_head.weight", e.Message);
    }

    [Fact]
    public void Hub_buffers_of_older_transformers_are_ignored()
    {
        var w = Fixtures.Load("bridgetower_model", "model.safetensors");
        w["text_model.embeddings.position_ids"] = Tensor.FromArray(new long[40], 1, 40);
        w["vision_model.visual.embeddings.position_ids"] = Tensor.FromArray(new long[17], 1, 17);
        var (_, store) = BridgeTowerWeights.LoadModel(Config("bridgetower_model"), new InMemoryWeights(w));
        Assert.False(store.Contains("text_model.embeddings.position_ids"));
    }

    [Fact]
    public void Sharded_checkpoint_folder_loads_like_the_single_file()
    {
        var dir = Directory.CreateTempSubdirectory("bt-sharded-").FullName;
        try
        {
            SafeTensors.SaveSharded(dir, Fixtures.Load("bridgetower_itm", "model.safetensors"), 300_000);
            Assert.True(Directory.GetFiles(dir, "*.safetensors").Length > 1);
            File.Copy(Fixtures.Path("bridgetower_itm", "config.json"), Path.Combine(dir, "config.json"));
            var itm = BridgeTowerForImageAndTextRetrieval.FromPretrained(dir);
            var inp = Fixtures.Load("bridgetower_itm", "inputs.safetensors");
            itm.Eval();
            using (Tensor.NoGrad())
                TensorAssert.Close(Fixtures.Load("bridgetower_itm", "outputs.safetensors")["logits"],
                    itm.Forward(inp["input_ids"], inp["attention_mask"], inp["pixel_values"]).Logits, 1e-4f, 1e-4f, "logits");
        }
        finally { Directory.Delete(dir, true); }
    }
}
