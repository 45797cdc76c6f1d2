namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// A device, its driver or its collective library failed (out of memory, a launch or a copy refused, a
/// collective that never completed): an error of the run, reported with the device, step and op it happened in.
/// </summary>
public class DeviceException(string message) : Exception(message);
