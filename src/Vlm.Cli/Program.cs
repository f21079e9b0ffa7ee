using System.CommandLine;

namespace Vlm.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("Vlm: vision-language models in C# (BridgeTower and relatives)");
        foreach (var c in Commands.All()) root.Subcommands.Add(c);
        return root.Parse(args).Invoke();
    }
}
