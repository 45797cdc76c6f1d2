global using ParallelCompiler.Runtime.Arrays;
