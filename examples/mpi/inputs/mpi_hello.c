/* Stand-in for SCHISM: every rank reports the node it runs on, and rank 0 gathers a token from all. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int rank, size, token = 0, total = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *node = getenv("AZ_BATCH_NODE_ID");
    const char *ip = getenv("LOCAL_BATCH_NODE_IP");
    token = rank + 1;
    MPI_Reduce(&token, &total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    printf("rank %d of %d on node %s (%s)\n", rank, size, node ? node : "?", ip ? ip : "?");
    fflush(stdout);
    if (rank == 0) {
        printf("sum of tokens %d\n", total);
        FILE *out = fopen("output/ranks.txt", "w");
        if (out) { fprintf(out, "ranks %d sum %d\n", size, total); fclose(out); }
    }
    MPI_Finalize();
    return 0;
}
