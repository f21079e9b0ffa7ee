using System.CommandLine;

namespace Vlm.Cli.Tests;

public sealed class BlipPretrainTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-blippt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static int Vlm(params string[] args)
    {
        var root = new RootCommand();
        foreach (var c in Commands.All()) root.Subcommands.Add(c);
        return root.Parse(args).Invoke();
    }

    [Fact]
    public void BadArgumentsFailWithoutTraining()
    {
        Assert.Equal(2, Vlm("blip-pretrain", "--kind", "coca", "--out", _dir));
        Assert.Equal(2, Vlm("blip-pretrain", "--batch", "1", "--out", _dir));
        Assert.Equal(2, Vlm("blip-pretrain", "--hidden", "40", "--out", _dir));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void TrainsATinyAlbefAndWritesItsCheckpoint()
    {
        Assert.Equal(0, Vlm("blip-pretrain", "--kind", "albef", "--out", _dir, "--steps", "2", "--batch", "2", "--scenes", "4", "--hidden", "32",
            "--text-layers", "2", "--queue", "4", "--checkpoint-every", "0"));
        Assert.True(File.Exists(Path.Combine(_dir, "checkpoints", "final", "trainer_state.json")));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl")).Length);
    }
}
