using System.CommandLine;

namespace Vlm.Cli;

/// <summary>Registry of subcommands; each lives in its own file as a static Build() returning a Command.</summary>
public static partial class Commands
{
    public static IEnumerable<Command> All()
    {
        yield return Demo.Build();
        yield return RunCase.Build();
        yield return Bench.Build();
        yield return Convert.Build();
        yield return Tokenize.Build();
        foreach (var c in ModelCommands.All()) yield return c;
        yield return IndexCommands.Build();
        yield return Caption.Build();
        yield return Serve.Build();
        foreach (var c in TrainCommands.All()) yield return c;
        yield return BlipPretrain.Build();
        yield return CapFiltCommands.Build();
        // One `experiment` command for every experiment (capfilt, bridges).
        var experiment = CapFiltCommands.BuildExperiment();
        experiment.Subcommands.Add(Experiment.BuildBridges());
        yield return experiment;
    }
}
