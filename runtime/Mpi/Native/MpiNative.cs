using System.Runtime.InteropServices;
using System.Text;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Mpi.Native;

/// <summary>A call into the MPI library failed: the message names the call and gives MPI's own text for the
/// code.</summary>
public sealed class MpiException(string call, int code, string text)
    : DeviceException($"{call} failed with MPI error {code}: {text}")
{
    /// <summary>The MPI function that failed, e.g. <c>MPI_Allgatherv</c>.</summary>
    public string Call { get; } = call;

    /// <summary>The error code it returned.</summary>
    public int Code { get; } = code;
}

/// <summary>
/// A thin binding of the MPI C API as Open MPI's <c>libmpi.so.40</c> exports it, shaped like MPI.NET's low-level
/// layer: the handles (<c>MPI_COMM_WORLD</c>, <c>MPI_BYTE</c>, ...) are the addresses of the library's exported
/// globals, the functions are resolved by name on first use, and every error code becomes an <see
/// cref="MpiException"/> naming the call. Nothing is loaded until <see cref="Library"/> is first touched, so a
/// machine without MPI runs everything else unchanged.
/// </summary>
public static unsafe class MpiNative
{
    /// <summary>MPI_THREAD_SERIALIZED: any thread may call MPI, one at a time.</summary>
    public const int ThreadSerialized = 2;

    private static readonly Lazy<nint> Handle = new(Load);

    /// <summary>The loaded library (throws <see cref="DllNotFoundException"/> naming it when MPI is absent).</summary>
    public static nint Library => Handle.Value;

    /// <summary>MPI_COMM_WORLD.</summary>
    public static nint CommWorld => Global("ompi_mpi_comm_world");

    /// <summary>MPI_BYTE.</summary>
    public static nint Byte => Global("ompi_mpi_byte");

    /// <summary>MPI_INT.</summary>
    public static nint Int => Global("ompi_mpi_int");

    /// <summary>MPI_ERRORS_RETURN: errors come back as codes (and so as exceptions) instead of aborting.</summary>
    public static nint ErrorsReturn => Global("ompi_mpi_errors_return");

    /// <summary>MPI_Initialized.</summary>
    public static bool Initialized()
    {
        int flag;
        Check("MPI_Initialized", ((delegate* unmanaged<int*, int>)Fn("MPI_Initialized"))(&flag));
        return flag != 0;
    }

    /// <summary>MPI_Init_thread without arguments; returns the thread level provided.</summary>
    public static int InitThread(int required)
    {
        int provided;
        int rc = ((delegate* unmanaged<int*, nint*, int, int*, int>)Fn("MPI_Init_thread"))(
            null,
            null,
            required,
            &provided
        );
        Check("MPI_Init_thread", rc);
        return provided;
    }

    /// <summary>MPI_Finalize.</summary>
    public static void FinalizeMpi() => Check("MPI_Finalize", ((delegate* unmanaged<int>)Fn("MPI_Finalize"))());

    /// <summary>MPI_Comm_set_errhandler.</summary>
    public static void CommSetErrhandler(nint comm, nint handler) =>
        Check(
            "MPI_Comm_set_errhandler",
            ((delegate* unmanaged<nint, nint, int>)Fn("MPI_Comm_set_errhandler"))(comm, handler)
        );

    /// <summary>MPI_Comm_rank.</summary>
    public static int CommRank(nint comm)
    {
        int r;
        Check("MPI_Comm_rank", ((delegate* unmanaged<nint, int*, int>)Fn("MPI_Comm_rank"))(comm, &r));
        return r;
    }

    /// <summary>MPI_Comm_size.</summary>
    public static int CommSize(nint comm)
    {
        int n;
        Check("MPI_Comm_size", ((delegate* unmanaged<nint, int*, int>)Fn("MPI_Comm_size"))(comm, &n));
        return n;
    }

    /// <summary>MPI_Comm_split: the new communicator of this process's <paramref name="color"/>, ranked by <paramref
    /// name="key"/>.</summary>
    public static nint CommSplit(nint comm, int color, int key)
    {
        nint result;
        Check(
            "MPI_Comm_split",
            ((delegate* unmanaged<nint, int, int, nint*, int>)Fn("MPI_Comm_split"))(comm, color, key, &result)
        );
        return result;
    }

    /// <summary>MPI_Comm_split_type with MPI_COMM_TYPE_SHARED (0 in Open MPI's mpi.h): the processes of this node,
    /// ranked by <paramref name="key"/>.</summary>
    public static nint CommSplitShared(nint comm, int key)
    {
        nint result;
        Check(
            "MPI_Comm_split_type",
            ((delegate* unmanaged<nint, int, int, nint, nint*, int>)Fn("MPI_Comm_split_type"))(
                comm,
                0,
                key,
                Global("ompi_mpi_info_null"),
                &result
            )
        );
        return result;
    }

    /// <summary>MPI_Iallgather of <paramref name="count"/> items of <paramref name="type"/> from every
    /// member.</summary>
    public static nint Iallgather(void* send, int count, nint type, void* recv, nint comm)
    {
        nint req;
        var f = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, nint*, int>)Fn("MPI_Iallgather");
        Check("MPI_Iallgather", f(send, count, type, recv, count, type, comm, &req));
        return req;
    }

    /// <summary>MPI_Iallgatherv of bytes: member i's <paramref name="counts"/>[i] bytes land at <paramref
    /// name="displs"/>[i].</summary>
    public static nint IallgathervBytes(void* send, int count, void* recv, int* counts, int* displs, nint comm)
    {
        nint req;
        var f = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, nint*, int>)Fn("MPI_Iallgatherv");
        Check("MPI_Iallgatherv", f(send, count, Byte, recv, counts, displs, Byte, comm, &req));
        return req;
    }

    /// <summary>MPI_Igatherv of bytes to <paramref name="root"/>: member i's <paramref name="counts"/>[i] bytes land at
    /// <paramref name="displs"/>[i] of the root's <paramref name="recv"/>.</summary>
    public static nint IgathervBytes(void* send, int count, void* recv, int* counts, int* displs, int root, nint comm)
    {
        nint req;
        var f = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, int, nint, nint*, int>)Fn(
            "MPI_Igatherv"
        );
        Check("MPI_Igatherv", f(send, count, Byte, recv, counts, displs, Byte, root, comm, &req));
        return req;
    }

    /// <summary>MPI_Alltoallv of bytes: <paramref name="sendCounts"/>[i] bytes from <paramref name="sendDispls"/>[i]
    /// go to member i; member i's <paramref name="recvCounts"/>[i] bytes land at <paramref name="recvDispls"/>[i].
    /// Blocking (MPI_Alltoallv, then 0) or not (MPI_Ialltoallv, then its request).</summary>
    public static nint AlltoallvBytes(
        void* send,
        int* sendCounts,
        int* sendDispls,
        void* recv,
        int* recvCounts,
        int* recvDispls,
        nint comm,
        bool blocking
    )
    {
        if (blocking)
        {
            var b = (delegate* unmanaged<void*, int*, int*, nint, void*, int*, int*, nint, nint, int>)Fn(
                "MPI_Alltoallv"
            );
            Check("MPI_Alltoallv", b(send, sendCounts, sendDispls, Byte, recv, recvCounts, recvDispls, Byte, comm));
            return 0;
        }
        nint req;
        var f = (delegate* unmanaged<void*, int*, int*, nint, void*, int*, int*, nint, nint, nint*, int>)Fn(
            "MPI_Ialltoallv"
        );
        Check("MPI_Ialltoallv", f(send, sendCounts, sendDispls, Byte, recv, recvCounts, recvDispls, Byte, comm, &req));
        return req;
    }

    /// <summary>MPI_Allgatherv of bytes, blocking.</summary>
    public static void AllgathervBytes(void* send, int count, void* recv, int* counts, int* displs, nint comm)
    {
        var f = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int>)Fn("MPI_Allgatherv");
        Check("MPI_Allgatherv", f(send, count, Byte, recv, counts, displs, Byte, comm));
    }

    /// <summary>MPI_IN_PLACE (Open MPI's value) as a send buffer: the data is already where the call puts it.</summary>
    public static void* InPlace => (void*)1;

    /// <summary>MPI_Allgather of <paramref name="count"/> bytes from every member, blocking.</summary>
    public static void AllgatherBytes(void* send, int count, void* recv, nint comm)
    {
        var f = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Fn("MPI_Allgather");
        Check("MPI_Allgather", f(send, count, Byte, recv, count, Byte, comm));
    }

    /// <summary>MPI_Alltoall of <paramref name="count"/> bytes to and from every member, blocking.</summary>
    public static void AlltoallBytes(void* send, int count, void* recv, nint comm)
    {
        var f = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Fn("MPI_Alltoall");
        Check("MPI_Alltoall", f(send, count, Byte, recv, count, Byte, comm));
    }

    /// <summary>MPI_Sendrecv of bytes, blocking: <paramref name="sendCount"/> bytes to <paramref name="dest"/>
    /// (none when it is negative), <paramref name="recvCount"/> bytes from <paramref name="source"/> (none when it is
    /// negative).</summary>
    public static void SendrecvBytes(
        void* send,
        int sendCount,
        int dest,
        void* recv,
        int recvCount,
        int source,
        int tag,
        nint comm
    )
    {
        const int procNull = -2; // Open MPI's MPI_PROC_NULL
        var status = stackalloc byte[64];
        var f = (delegate* unmanaged<void*, int, nint, int, int, void*, int, nint, int, int, nint, void*, int>)Fn(
            "MPI_Sendrecv"
        );
        Check(
            "MPI_Sendrecv",
            f(
                send,
                Math.Max(sendCount, 0),
                Byte,
                dest < 0 ? procNull : dest,
                tag,
                recv,
                Math.Max(recvCount, 0),
                Byte,
                source < 0 ? procNull : source,
                tag,
                comm,
                status
            )
        );
    }

    /// <summary>MPI_Isend of bytes.</summary>
    public static nint IsendBytes(void* buf, int count, int dest, int tag, nint comm)
    {
        nint req;
        var f = (delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int>)Fn("MPI_Isend");
        Check("MPI_Isend", f(buf, count, Byte, dest, tag, comm, &req));
        return req;
    }

    /// <summary>MPI_Iprobe: the size in bytes of the next message from <paramref name="source"/> with <paramref
    /// name="tag"/>, or -1 when none has arrived.</summary>
    public static int IprobeBytes(int source, int tag, nint comm)
    {
        int flag;
        var status = stackalloc byte[64];
        Check(
            "MPI_Iprobe",
            ((delegate* unmanaged<int, int, nint, int*, void*, int>)Fn("MPI_Iprobe"))(source, tag, comm, &flag, status)
        );
        if (flag == 0)
            return -1;
        int count;
        Check(
            "MPI_Get_count",
            ((delegate* unmanaged<void*, nint, int*, int>)Fn("MPI_Get_count"))(status, Byte, &count)
        );
        return count;
    }

    /// <summary>MPI_Recv of bytes (status ignored).</summary>
    public static void RecvBytes(void* buf, int count, int source, int tag, nint comm)
    {
        var f = (delegate* unmanaged<void*, int, nint, int, int, nint, void*, int>)Fn("MPI_Recv");
        Check("MPI_Recv", f(buf, count, Byte, source, tag, comm, null));
    }

    /// <summary>MPI_Test: whether <paramref name="request"/> has completed (it is then freed and set to
    /// null).</summary>
    public static bool Test(ref nint request)
    {
        int flag;
        nint r = request;
        Check("MPI_Test", ((delegate* unmanaged<nint*, int*, void*, int>)Fn("MPI_Test"))(&r, &flag, null));
        request = r;
        return flag != 0;
    }

    /// <summary>MPI_Abort: ends every process of <paramref name="comm"/> with <paramref name="code"/>.</summary>
    public static void Abort(nint comm, int code) =>
        Check("MPI_Abort", ((delegate* unmanaged<nint, int, int>)Fn("MPI_Abort"))(comm, code));

    private static nint Load()
    {
        foreach (var name in new[] { "libmpi.so.40", "libmpi.so" })
            if (NativeLibrary.TryLoad(name, out var h))
                return h;
        throw new DllNotFoundException(
            "the MPI library (libmpi.so.40 or libmpi.so) was not found: install Open MPI (Debian: openmpi-bin)"
        );
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, nint> Functions = new();

    // Resolved once a name: collectives of small arrays call these at a high rate.
    private static nint Fn(string name) => Functions.GetOrAdd(name, n => NativeLibrary.GetExport(Library, n));

    private static nint Global(string name) => NativeLibrary.GetExport(Library, name);

    private static void Check(string call, int code)
    {
        if (code == 0)
            return;
        var buf = stackalloc byte[512];
        int len = 0;
        int rc = ((delegate* unmanaged<int, byte*, int*, int>)Fn("MPI_Error_string"))(code, buf, &len);
        string text = rc == 0 ? Encoding.ASCII.GetString(buf, Math.Clamp(len, 0, 512)) : "(no description)";
        throw new MpiException(call, code, text);
    }
}
