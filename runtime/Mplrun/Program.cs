using ParallelCompiler.Mplrun;

return MplrunCli.Execute(args, Console.Out, Console.Error);
