#ifndef SYNCYTIUM_CIGRAPH_SHIM_H
#define SYNCYTIUM_CIGRAPH_SHIM_H
// igraph (Debian 12: libigraph-dev 0.10.2, 64-bit igraph_integer_t). Vector element access is a
// macro (VECTOR(v)[i]) and the default error handler aborts the process, so the one call
// Syncytium makes — Leiden with the modularity objective on an undirected weighted graph — is a
// static inline function here that returns igraph's error code instead. Imported only by Neighbors.
// igraph.h defines _GNU_SOURCE before its own system includes; were those headers first seen here,
// their declarations (e.g. fd_set) would differ from the ones Glibc and Foundation's modules see,
// and modules importing both fail to build. So the system headers igraph uses come first.
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <igraph.h>

/// Leiden (Traag et al. 2019) maximising modularity at `resolution`, as python-igraph's
/// `Graph.community_leiden(objective_function="modularity", weights=w, resolution=γ, beta=β,
/// n_iterations=it)` does: node weights are the weighted degrees (strengths) k_i and igraph's
/// resolution parameter is γ / Σ_i k_i (= γ / 2m), so the quality is Σ_ij (A_ij − γ k_i k_j / 2m) δ(c_i, c_j).
///   n: vertices; edges: 2·edgeCount vertex ids (each undirected edge once); weights: edgeCount.
///   membership: n outputs (communities numbered 0… by igraph); clusters, modularity (at γ, igraph_modularity).
/// igraph's default RNG is seeded with `seed` first, so a call is deterministic for its inputs.
static inline int syn_igraph_leiden_modularity(int64_t n, const int64_t *edges, int64_t edgeCount,
                                               const double *weights, double resolution, double beta,
                                               int64_t iterations, uint64_t seed, int64_t *membership,
                                               int64_t *clusters, double *modularity) {
    igraph_set_error_handler(igraph_error_handler_ignore);
    igraph_set_warning_handler(igraph_warning_handler_ignore);
    igraph_vector_int_t edgeView;
    igraph_vector_t weightView;
    igraph_vector_int_view(&edgeView, edges, 2 * edgeCount);
    igraph_vector_view(&weightView, weights, edgeCount);
    igraph_t graph;
    igraph_error_t rc = igraph_create(&graph, &edgeView, n, IGRAPH_UNDIRECTED);
    if (rc != IGRAPH_SUCCESS) return (int)rc;
    igraph_vector_t strength;
    igraph_vector_int_t member;
    rc = igraph_vector_init(&strength, n);
    if (rc != IGRAPH_SUCCESS) { igraph_destroy(&graph); return (int)rc; }
    rc = igraph_vector_int_init(&member, n);
    if (rc != IGRAPH_SUCCESS) { igraph_vector_destroy(&strength); igraph_destroy(&graph); return (int)rc; }
    rc = igraph_strength(&graph, &strength, igraph_vss_all(), IGRAPH_ALL, IGRAPH_LOOPS, &weightView);
    double total = rc == IGRAPH_SUCCESS ? igraph_vector_sum(&strength) : 0;
    if (rc == IGRAPH_SUCCESS && total > 0) {
        igraph_rng_seed(igraph_rng_default(), (igraph_uint_t)seed);
        igraph_integer_t found = 0;
        igraph_real_t quality = 0;
        rc = igraph_community_leiden(&graph, &weightView, &strength, resolution / total, beta, 0, iterations,
                                     &member, &found, &quality);
        if (rc == IGRAPH_SUCCESS) {
            *clusters = found;
            rc = igraph_modularity(&graph, &member, &weightView, resolution, IGRAPH_UNDIRECTED, modularity);
        }
        if (rc == IGRAPH_SUCCESS)
            for (int64_t i = 0; i < n; i++) membership[i] = VECTOR(member)[i];
    } else if (rc == IGRAPH_SUCCESS) {
        // No edge weight at all: every vertex is its own community.
        for (int64_t i = 0; i < n; i++) membership[i] = i;
        *clusters = n;
        *modularity = 0;
    }
    igraph_vector_int_destroy(&member);
    igraph_vector_destroy(&strength);
    igraph_destroy(&graph);
    return (int)rc;
}

/// igraph's message for an error code.
static inline const char *syn_igraph_strerror(int code) { return igraph_strerror((igraph_error_t)code); }

#endif
