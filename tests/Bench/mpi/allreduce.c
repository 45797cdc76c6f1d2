/* Open MPI's own MPI_Allreduce (float sum) on the buffer sizes the runtime's benchmark uses: for each size in
   bytes given, the seconds a call takes (the slowest rank's mean over the timed calls), printed by rank 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  /* The same warm-up as the runtime's side (tests/Bench/Mpi.cs): two rounds of 1000 calls of 4 KiB, each followed
     by a pause of 0.5 s. */
  float warm_in[1024] = {0}, warm_out[1024];
  for (int round = 0; round < 2; round++) {
    for (int w = 0; w < 1000; w++) MPI_Allreduce(warm_in, warm_out, 1024, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    usleep(500000);
  }
  for (int a = 1; a < argc; a++) {
    long bytes = atol(argv[a]);
    int n = (int)(bytes / 4);
    int repeat = (int)(64L * 1024 * 1024 / bytes);
    if (repeat < 5) repeat = 5;
    if (repeat > 200) repeat = 200;
    float *in = malloc(bytes), *out = malloc(bytes);
    for (int i = 0; i < n; i++) in[i] = (float)(rank + i % 7);
    for (int w = 0; w < 3; w++) MPI_Allreduce(in, out, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int r = 0; r < repeat; r++) MPI_Allreduce(in, out, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double t = (MPI_Wtime() - t0) / repeat, worst;
    MPI_Reduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("%ld %.9f\n", bytes, worst);
    free(in);
    free(out);
  }
  MPI_Finalize();
  return 0;
}
