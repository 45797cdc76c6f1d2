namespace ParallelCompiler.Syntax;

/// <summary>A problem with the user's input (file, flag, data): reported as "error: ..." with exit code 1.</summary>
public sealed class UserErrorException(string message) : Exception(message);
