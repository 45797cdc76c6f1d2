using ParallelCompiler.Driver;

// The compiler recurses over expressions; a large stack makes pathological input an error, never a crash.
int code = 0;
var thread = new Thread(() => code = Cli.Main(args), 512 * 1024 * 1024);
thread.Start();
thread.Join();
return code;
