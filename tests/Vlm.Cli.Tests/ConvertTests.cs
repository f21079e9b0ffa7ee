using System.CommandLine;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Cli.Tests;

public sealed class ConvertTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-conv-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Data(string f) => Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Core.Tests", "Data", f);

    private static int Vlm(params string[] args)
    {
        var root = new RootCommand();
        foreach (var c in Commands.All()) root.Subcommands.Add(c);
        return root.Parse(args).Invoke();
    }

    [Fact]
    public void ConvertsAFolderWithAPyTorchBinToSafeTensors()
    {
        File.Copy(Data("pt_basic.bin"), Path.Combine(_dir, "pytorch_model.bin"));
        Assert.Equal(0, Vlm("convert", _dir));
        using var bin = PyTorchBinFile.Open(Path.Combine(_dir, "pytorch_model.bin"));
        using var st = SafeTensorsFile.Open(Path.Combine(_dir, "model.safetensors"));
        Assert.Equal(bin.Names, st.Names);
        foreach (var n in bin.Names) Assert.Equal(bin.Load(n).ToArray(), st.Load(n).ToArray());
        Assert.Equal("F32", st.Info("f16").DType);
        Assert.Equal("pytorch_model.bin", st.Metadata["converted_from"]);
        // A second run refuses to overwrite; --force does. The folder now holds model.safetensors, which CheckpointLoader
        // prefers, so point at the .bin explicitly.
        Assert.Equal(1, Vlm("convert", Path.Combine(_dir, "pytorch_model.bin")));
        Assert.Equal(0, Vlm("convert", Path.Combine(_dir, "pytorch_model.bin"), "--force"));
        Assert.Equal(1, Vlm("convert", _dir)); // would overwrite its own input
    }

    [Fact]
    public void ConvertsToShardsAndRefusesMaliciousInput()
    {
        string outDir = Path.Combine(_dir, "sharded");
        Assert.Equal(0, Vlm("convert", Data("pt_basic.bin"), "--out", outDir, "--max-shard-bytes", "200"));
        using (var w = CheckpointLoader.Open(outDir))
        using (var bin = PyTorchBinFile.Open(Data("pt_basic.bin")))
        {
            Assert.IsType<ShardedCheckpoint>(w);
            foreach (var n in bin.Names) Assert.Equal(bin.Load(n).ToArray(), w.Load(n).ToArray());
        }
        Assert.Equal(1, Vlm("convert", Data("pt_malicious.bin"), "--out", Path.Combine(_dir, "x.safetensors")));
        Assert.False(File.Exists(Path.Combine(_dir, "x.safetensors")));
        Assert.Equal(1, Vlm("convert", Path.Combine(_dir, "nothing-here")));
    }
}
